import { describe, expect, it } from "vitest";
import { blueprintAdmits, blueprintAdmitsIdentity, selectorMatches } from "../../src/api/admit.ts";
import { AGENT, blueprint, identity, OTHER_AGENT } from "../support/api-fixtures.ts";

describe("selectorMatches", () => {
  it.each([
    ["matchLabels all present", { matchLabels: { a: "1", b: "2" } }, { a: "1", b: "2", c: "3" }, true],
    ["a matchLabels value differs", { matchLabels: { a: "1" } }, { a: "2" }, false],
    [
      "In",
      { matchExpressions: [{ key: "t", operator: "In" as const, values: ["x", "y"] }] },
      { t: "y" },
      true,
    ],
    [
      "In without the label",
      { matchExpressions: [{ key: "t", operator: "In" as const, values: ["x"] }] },
      {},
      false,
    ],
    [
      "NotIn with another value",
      { matchExpressions: [{ key: "t", operator: "NotIn" as const, values: ["x"] }] },
      { t: "y" },
      true,
    ],
    [
      "NotIn with the value",
      { matchExpressions: [{ key: "t", operator: "NotIn" as const, values: ["x"] }] },
      { t: "x" },
      false,
    ],
    ["Exists", { matchExpressions: [{ key: "t", operator: "Exists" as const }] }, { t: "" }, true],
    [
      "DoesNotExist",
      { matchExpressions: [{ key: "t", operator: "DoesNotExist" as const }] },
      { t: "x" },
      false,
    ],
    ["the empty selector", {}, {}, true],
  ])("%s", (_name, selector, labels, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });

  it("admits nothing for an operator it does not know (fail closed)", () => {
    const selector = { matchExpressions: [{ key: "t", operator: "Gt" as "In", values: ["1"] }] };
    expect(selectorMatches(selector, { t: "2" })).toBe(false);
  });
});

describe("blueprintAdmits", () => {
  const ns = { name: "ns", labels: { team: "research" } };

  it("admits a listed namespace and an allowed agent (case-insensitive GUIDs)", () => {
    expect(blueprintAdmits(blueprint(), ns, AGENT.toUpperCase())).toEqual({ allowed: true });
  });

  it("admits a namespace by selector", () => {
    const bp = blueprint({
      admits: [{ namespaceSelector: { matchLabels: { team: "research" } }, agents: { allowed: [AGENT] } }],
    });
    expect(blueprintAdmits(bp, ns, AGENT)).toEqual({ allowed: true });
    expect(blueprintAdmits(bp, { name: "ns", labels: { team: "other" } }, AGENT)).toMatchObject({
      allowed: false,
      reason: "NamespaceNotAdmitted",
    });
  });

  it("admits no namespace when the blueprint names none", () => {
    expect(
      blueprintAdmits(blueprint({ admits: [{ agents: { allowed: [AGENT] } }] }), ns, AGENT),
    ).toMatchObject({
      allowed: false,
      reason: "NamespaceNotAdmitted",
    });
    expect(blueprintAdmits(blueprint({ admits: undefined }), ns, AGENT)).toMatchObject({ allowed: false });
  });

  it("refuses an agent that is not on the allow-list, naming it", () => {
    const result = blueprintAdmits(blueprint(), ns, OTHER_AGENT);
    expect(result).toMatchObject({ allowed: false, reason: "AgentNotAllowed" });
    expect(!result.allowed && result.message).toContain(OTHER_AGENT);
  });

  it("lets an identity ask for a new agent only where the blueprint permits creation", () => {
    expect(blueprintAdmits(blueprint(), ns, undefined)).toMatchObject({
      allowed: false,
      reason: "AgentCreationNotAllowed",
    });
    const bp = blueprint({ admits: [{ namespaces: ["ns"], agents: { create: true } }] });
    expect(blueprintAdmits(bp, ns, undefined)).toEqual({ allowed: true });
    // Creation does not open the allow-list.
    expect(blueprintAdmits(bp, ns, AGENT)).toMatchObject({ allowed: false, reason: "AgentNotAllowed" });
  });

  it("refuses everything for a blueprint being deleted", () => {
    const bp = blueprint();
    bp.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    expect(blueprintAdmits(bp, ns, AGENT)).toMatchObject({ allowed: false, reason: "BlueprintDeleting" });
  });
});

describe("blueprintAdmitsIdentity", () => {
  const ns = { name: "ns" };
  it("refuses a development secret unless the blueprint allows them", () => {
    const withSecret = identity({ clientSecretRef: { name: "s", key: "k" } });
    expect(blueprintAdmitsIdentity(blueprint(), ns, withSecret)).toMatchObject({
      allowed: false,
      reason: "DevelopmentSecretsNotAllowed",
    });
    const bp = blueprint({
      admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] }, developmentSecrets: true }],
    });
    expect(blueprintAdmitsIdentity(bp, ns, withSecret)).toEqual({ allowed: true });
  });

  it("refuses widening the sidecar's agent lock unless the blueprint allows exactly that widening", () => {
    const widened = identity({ sidecar: { allowBlueprintToken: true, allowFmiPathOverride: true } });
    const refused = blueprintAdmitsIdentity(blueprint(), ns, widened);
    expect(refused).toMatchObject({ allowed: false, reason: "SidecarWideningNotAllowed" });
    expect(refused.allowed === false && refused.message).toMatch(
      /allowBlueprintToken .*allowFmiPathOverride/,
    );
    // Allowing one widening does not allow the other.
    const tokenOnly = blueprint({
      admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] }, sidecar: { allowBlueprintToken: true } }],
    });
    const stillRefused = blueprintAdmitsIdentity(tokenOnly, ns, widened);
    expect(stillRefused).toMatchObject({ allowed: false, reason: "SidecarWideningNotAllowed" });
    expect(stillRefused.allowed === false && stillRefused.message).not.toMatch(/allowBlueprintToken/);
    const both = blueprint({
      admits: [
        {
          namespaces: ["ns"],
          agents: { allowed: [AGENT] },
          sidecar: { allowBlueprintToken: true, allowFmiPathOverride: true },
        },
      ],
    });
    expect(blueprintAdmitsIdentity(both, ns, widened)).toEqual({ allowed: true });
  });

  it("checks a created agent against the create permission, not the allow-list", () => {
    const created = identity({ agent: { create: { displayName: "x" } } });
    created.status = { agent: { clientId: OTHER_AGENT, created: true } };
    expect(blueprintAdmitsIdentity(blueprint(), ns, created)).toMatchObject({
      reason: "AgentCreationNotAllowed",
    });
  });
});
