import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { checkSecretReference, findBindingConflicts, validateAgentIdentity } from "../../src/api/validate.ts";

const TENANT = "11111111-1111-1111-1111-111111111111";
const BLUEPRINT = "22222222-2222-2222-2222-222222222222";

const good = {
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentity",
  metadata: { name: "a", namespace: "ns" },
  spec: {
    tenantId: TENANT,
    blueprint: { clientId: BLUEPRINT, credential: { workloadIdentity: {} } },
    serviceAccountName: "a",
  },
};

function withSpec(patch: Record<string, unknown>): unknown {
  return { ...good, spec: { ...good.spec, ...patch } };
}

describe("validateAgentIdentity", () => {
  it("accepts a minimal identity", () => {
    expect(validateAgentIdentity(good)).toMatchObject({ ok: true });
  });

  const bad: Array<[string, unknown, string]> = [
    ["a non-object", "x", "not an object"],
    [
      "a tenant that is not a GUID",
      withSpec({ tenantId: "contoso.onmicrosoft.com" }),
      "spec.tenantId must be a GUID",
    ],
    ["an http instance", withSpec({ instance: "http://login" }), "spec.instance must be an https URL"],
    [
      "two credentials",
      withSpec({
        blueprint: { clientId: BLUEPRINT, credential: { workloadIdentity: {}, managedIdentity: {} } },
      }),
      "exactly one of",
    ],
    [
      "no credential member",
      withSpec({ blueprint: { clientId: BLUEPRINT, credential: {} } }),
      "exactly one of",
    ],
    ["agentId equal to the blueprint", withSpec({ agentId: BLUEPRINT }), "cannot equal"],
    ["an upper-case ServiceAccount", withSpec({ serviceAccountName: "Agent" }), "serviceAccountName"],
    [
      "an http API",
      withSpec({ downstreamApis: { g: { baseUrl: "http://g/", scopes: ["s"] } } }),
      "baseUrl must be an https URL",
    ],
    [
      "an app-token API with a delegated scope",
      withSpec({
        downstreamApis: { g: { baseUrl: "https://g/", scopes: ["User.Read"], requestAppToken: true } },
      }),
      "exactly one scope ending in /.default",
    ],
    [
      "an API name with __",
      withSpec({ downstreamApis: { a__b: { baseUrl: "https://g/", scopes: ["s"] } } }),
      "invalid API name",
    ],
    ["an unknown federation mode", withSpec({ federation: { mode: "Auto" } }), "Manual or Graph"],
  ];
  for (const [name, value, problem] of bad) {
    it(`refuses ${name}`, () => {
      const result = validateAgentIdentity(value);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.problems.join("; ")).toContain(problem);
    });
  }
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

describe("findBindingConflicts", () => {
  const make = (name: string, sa: string, extra: Partial<AgentIdentity["metadata"]> = {}): AgentIdentity => ({
    metadata: { name, namespace: "ns", ...extra },
    spec: { tenantId: TENANT, blueprint: { clientId: BLUEPRINT }, serviceAccountName: sa },
  });
  it("names the other identities binding the same ServiceAccount, ignoring deleted ones and other accounts", () => {
    const a = make("a", "sa");
    const all = [
      a,
      make("c", "sa"),
      make("b", "sa"),
      make("d", "other"),
      make("e", "sa", { deletionTimestamp: "2026-01-01T00:00:00Z" }),
    ];
    expect(findBindingConflicts(a, all)).toEqual(["b", "c"]);
    expect(findBindingConflicts(make("d", "other"), all)).toEqual([]);
  });
});
