import { describe, expect, it } from "vitest";
import { checkSecretReference, validateAgentIdentity, validateBlueprint } from "../../src/api/validate.ts";
import { AGENT, BLUEPRINT, blueprint, identity, TENANT } from "../support/api-fixtures.ts";

const good = identity();
function withSpec(patch: Record<string, unknown>): unknown {
  return { ...good, spec: { ...good.spec, ...patch } };
}

describe("validateAgentIdentity", () => {
  it("accepts a minimal identity, and one that asks for a new agent", () => {
    expect(validateAgentIdentity(good)).toMatchObject({ ok: true });
    expect(validateAgentIdentity(withSpec({ agent: { create: { displayName: "A" } } }))).toMatchObject({
      ok: true,
    });
  });

  const bad: Array<[string, unknown, string]> = [
    ["a non-object", "x", "not an object"],
    ["no blueprint", withSpec({ blueprintRef: undefined }), "spec.blueprintRef.name"],
    [
      "both agent forms",
      withSpec({ agent: { clientId: AGENT, create: { displayName: "A" } } }),
      "exactly one of",
    ],
    ["no agent form", withSpec({ agent: {} }), "exactly one of"],
    [
      "an agent that is not a GUID",
      withSpec({ agent: { clientId: "x" } }),
      "spec.agent.clientId must be a GUID",
    ],
    ["an upper-case ServiceAccount", withSpec({ serviceAccountName: "Agent" }), "serviceAccountName"],
    ["a map of APIs (the old shape)", withSpec({ downstreamApis: { g: {} } }), "must be a list"],
    [
      "an http API",
      withSpec({ downstreamApis: [{ name: "g", baseUrl: "http://g/", scopes: ["s"] }] }),
      "baseUrl must be an https URL",
    ],
    [
      "an app-token API with a delegated scope",
      withSpec({
        downstreamApis: [{ name: "g", baseUrl: "https://g/", scopes: ["User.Read"], requestAppToken: true }],
      }),
      "exactly one scope ending in /.default",
    ],
    [
      "an API name with __",
      withSpec({ downstreamApis: [{ name: "a__b", baseUrl: "https://g/", scopes: ["s"] }] }),
      "invalid API name",
    ],
    [
      "two APIs with one name",
      withSpec({
        downstreamApis: [
          { name: "a", baseUrl: "https://g/", scopes: ["s"] },
          { name: "a", baseUrl: "https://h/", scopes: ["s"] },
        ],
      }),
      "duplicate API name",
    ],
    [
      "a token lifetime under 600 s",
      withSpec({ sidecar: { tokenExpirationSeconds: 60 } }),
      "tokenExpirationSeconds",
    ],
    ["a clientSecretRef without key", withSpec({ clientSecretRef: { name: "s" } }), "clientSecretRef"],
  ];
  for (const [name, value, problem] of bad) {
    it(`refuses ${name}`, () => {
      const result = validateAgentIdentity(value);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.problems.join("; ")).toContain(problem);
    });
  }
});

describe("validateBlueprint", () => {
  const bp = blueprint();
  const withBp = (patch: Record<string, unknown>) => ({ ...bp, spec: { ...bp.spec, ...patch } });
  it("accepts a blueprint", () => {
    expect(validateBlueprint(bp)).toMatchObject({ ok: true });
    expect(
      validateBlueprint(withBp({ cloud: "Custom", authorityHost: "https://login.test/" })),
    ).toMatchObject({ ok: true });
  });
  it.each([
    ["a tenant that is not a GUID", withBp({ tenantId: "contoso" }), "spec.tenantId"],
    ["Custom without a host", withBp({ cloud: "Custom" }), "spec.authorityHost must be an https URL"],
    [
      "a host with a named cloud",
      withBp({ authorityHost: "https://login.test/" }),
      "only allowed with cloud Custom",
    ],
    ["an unknown cloud", withBp({ cloud: "Mars" }), "spec.cloud"],
    [
      "two credentials",
      withBp({ credential: { workloadIdentity: {}, managedIdentity: {} } }),
      "exactly one of",
    ],
    [
      "Graph with a managed identity",
      withBp({ credential: { managedIdentity: {} }, federation: { management: "Graph" } }),
      "needs credential.workloadIdentity",
    ],
    [
      "its own client id as an agent",
      withBp({ admits: [{ agents: { allowed: [BLUEPRINT] } }] }),
      "own clientId",
    ],
  ])("refuses %s", (_name, value, problem) => {
    const result = validateBlueprint(value);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join("; ")).toContain(problem);
  });
  it("keeps TENANT a GUID in the fixture", () => {
    expect(validateBlueprint(withBp({ tenantId: TENANT }))).toMatchObject({ ok: true });
  });
});

describe("checkSecretReference", () => {
  const ref = { name: "bp", key: "secret" };
  it.each([
    ["a missing Secret", undefined, "SecretNotFound"],
    ["a missing key", { data: { other: "eA==" } }, "SecretKeyNotFound"],
    ["an empty value", { data: { secret: "" } }, "SecretKeyNotFound"],
  ])("reports %s", (_name, secret, reason) => {
    expect(checkSecretReference(secret, ref)).toMatchObject({ ok: false, reason });
  });
  it("accepts a present key and never echoes a value", () => {
    expect(checkSecretReference({ data: { secret: "c2VjcmV0" } }, ref)).toEqual({ ok: true });
    const result = checkSecretReference({ data: { other: "dmFsdWU=" } }, ref);
    expect(JSON.stringify(result)).not.toContain("dmFsdWU=");
  });
});
