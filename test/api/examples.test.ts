import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { blueprintAdmitsIdentity } from "../../src/api/admit.ts";
import { renderSidecarSettings } from "../../src/api/render.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { validateAgentIdentity, validateBlueprint } from "../../src/api/validate.ts";

/** The examples in examples/ are valid and mean what their comments say. */
const load = <T>(file: string): T[] =>
  parseAllDocuments(readFileSync(new URL(`../../examples/${file}`, import.meta.url), "utf8")).map(
    (d) => d.toJSON() as T,
  );

describe("examples/", () => {
  const [blueprint] = load<AgentIdentityBlueprint>("agentidentityblueprint.yaml");
  const identities = load<AgentIdentity>("agentidentity.yaml");
  if (!blueprint) throw new Error("no blueprint example");
  const labelled = { name: "agents", labels: { "agentid.io/blueprint": "contoso-research" } };

  it("hold a valid blueprint and valid identities", () => {
    expect(validateBlueprint(blueprint)).toMatchObject({ ok: true });
    for (const identity of identities) expect(validateAgentIdentity(identity)).toMatchObject({ ok: true });
  });

  it("admit the identities in a namespace the platform team labelled, and no other", () => {
    for (const identity of identities) {
      expect(blueprintAdmitsIdentity(blueprint, labelled, identity)).toEqual({ allowed: true });
      expect(blueprintAdmitsIdentity(blueprint, { name: "agents" }, identity)).toMatchObject({
        allowed: false,
      });
    }
  });

  it("tie each team's namespace to its own agents", () => {
    const named = identities.find((i) => i.spec.agent.clientId);
    if (!named) throw new Error("no identity with a named agent");
    expect(blueprintAdmitsIdentity(blueprint, { name: "support-bots" }, named)).toMatchObject({
      allowed: false,
      reason: "AgentNotAllowed",
    });
    const support = {
      ...named,
      spec: { ...named.spec, agent: { clientId: "2b9d4e61-7a0c-4f3e-9d85-6c1e0f4a7b32" } },
    };
    expect(blueprintAdmitsIdentity(blueprint, { name: "support-bots" }, support)).toEqual({ allowed: true });
    expect(blueprintAdmitsIdentity(blueprint, labelled, support)).toMatchObject({
      reason: "AgentNotAllowed",
    });
  });

  it("render the named agent's sidecar once the manager allows the emulator's host", () => {
    const named = identities.find((i) => i.spec.agent.clientId);
    if (!named) throw new Error("no identity with a named agent");
    expect(renderSidecarSettings(named, blueprint)).toMatchObject({
      ok: false,
      reason: "AuthorityHostNotAllowed",
    });
    const rendered = renderSidecarSettings(named, blueprint, {
      allowedAuthorityHosts: ["https://127.0.0.1:9443/"],
    });
    expect(rendered.ok && rendered.settings.agentClientId).toBe(named.spec.agent.clientId);
  });
});
