import { describe, expect, it } from "vitest";
import { agentClientIdOf, isIdentityReady } from "../../src/api/ready.ts";
import type { AgentIdentity, ConditionStatus } from "../../src/api/types.ts";
import { AGENT, identity, OTHER_AGENT } from "../support/api-fixtures.ts";

function withReady(status: ConditionStatus, observed: number, generation = 2): AgentIdentity {
  const i = identity();
  i.metadata.generation = generation;
  i.status = {
    observedGeneration: observed,
    conditions: [
      {
        type: "Ready",
        status,
        reason: "R",
        message: "m",
        observedGeneration: observed,
        lastTransitionTime: "2026-01-01T00:00:00Z",
      },
    ],
  };
  return i;
}

describe("isIdentityReady", () => {
  it("is true for Ready=True written for the current generation", () => {
    expect(isIdentityReady(withReady("True", 2))).toBe(true);
  });
  it.each([
    ["Ready=False", withReady("False", 2)],
    ["Ready=Unknown", withReady("Unknown", 2)],
    ["a Ready=True from an older generation", withReady("True", 1)],
    ["no status", identity()],
  ])("is false for %s", (_name, i) => {
    expect(isIdentityReady(i)).toBe(false);
  });
});

describe("agentClientIdOf", () => {
  it("is the named agent", () => {
    expect(agentClientIdOf(identity())).toBe(AGENT);
  });
  it("is the created agent once the operator recorded it", () => {
    const i = identity({ agent: { create: { displayName: "x" } } });
    expect(agentClientIdOf(i)).toBeUndefined();
    i.status = { agent: { clientId: OTHER_AGENT, created: true } };
    expect(agentClientIdOf(i)).toBe(OTHER_AGENT);
  });
  it("ignores a recorded agent the operator did not create", () => {
    const i = identity({ agent: { create: { displayName: "x" } } });
    i.status = { agent: { clientId: OTHER_AGENT } };
    expect(agentClientIdOf(i)).toBeUndefined();
  });
  it("prefers the spec's agent over any status", () => {
    const i = identity();
    i.status = { agent: { clientId: OTHER_AGENT, created: true } };
    expect(agentClientIdOf(i)).toBe(AGENT);
  });
});
