import { describe, expect, it } from "vitest";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import {
  blueprintRecord,
  credentialHeir,
  movedCredential,
  namespaceSubjectPrefix,
  sameApplication,
  writtenCredential,
} from "../../src/operator/revoke.ts";
import { desiredStatus, initialObservations, type Observations } from "../../src/operator/status.ts";

const TENANT = "11111111-1111-1111-1111-111111111111";
const APP_A = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const APP_B = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
const AGENT = "33333333-3333-3333-3333-333333333333";

function blueprint(
  name: string,
  clientId: string,
  extra: Partial<AgentIdentityBlueprint["spec"]> = {},
): AgentIdentityBlueprint {
  return {
    metadata: { name },
    spec: {
      tenantId: TENANT,
      clientId,
      federation: { management: "Graph" },
      admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] } }],
      ...extra,
    },
  };
}

const credential = {
  name: "agentid-ns-agent-0123456789ab",
  issuer: "https://issuer",
  subject: "system:serviceaccount:ns:agent",
  audiences: ["api://AzureADTokenExchange"],
  azCommand: "az …",
};

function identity(
  name = "agent",
  status: AgentIdentity["status"] = undefined,
  extra: Partial<AgentIdentity["spec"]> = {},
  deleting = false,
): AgentIdentity {
  return {
    metadata: {
      name,
      namespace: "ns",
      generation: 1,
      ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}),
    },
    spec: { blueprintRef: { name: "a" }, agent: { clientId: AGENT }, serviceAccountName: "agent", ...extra },
    ...(status ? { status } : {}),
  };
}

const a = blueprint("a", APP_A);

describe("writtenCredential", () => {
  it("is the recorded blueprint, even when the blueprint is gone or now another application", () => {
    const recorded = identity("agent", {
      federatedCredential: { ...credential, blueprint: blueprintRecord(a) },
    });
    const expected = { name: credential.name, blueprint: { name: "a", tenantId: TENANT, clientId: APP_A } };
    expect(writtenCredential(recorded, a)).toEqual(expected);
    expect(writtenCredential(recorded, undefined)).toEqual(expected);
    expect(writtenCredential(recorded, blueprint("a", APP_B))).toEqual(expected);
  });

  it("falls back to the current Graph-mode blueprint for a status written before the blueprint was recorded", () => {
    const legacy = identity("agent", { federatedCredential: credential });
    expect(writtenCredential(legacy, a)?.blueprint).toEqual(blueprintRecord(a));
    // Manual mode: the credential is the platform team's, never the operator's to remove.
    expect(writtenCredential(legacy, blueprint("a", APP_A, { federation: { management: "Manual" } }))).toBe(
      undefined,
    );
    expect(writtenCredential(legacy, undefined)).toBeUndefined();
  });

  it("is nothing without a recorded credential", () => {
    expect(writtenCredential(identity(), a)).toBeUndefined();
  });
});

describe("movedCredential", () => {
  const recorded = identity("agent", {
    federatedCredential: { ...credential, blueprint: blueprintRecord(a) },
  });

  it("is the record when the current blueprint is another application (client or tenant id)", () => {
    expect(movedCredential(recorded, blueprint("a", APP_B))?.blueprint.clientId).toBe(APP_A);
    expect(
      movedCredential(recorded, {
        ...a,
        spec: { ...a.spec, tenantId: "22222222-2222-2222-2222-222222222222" },
      }),
    ).toBeDefined();
  });

  it("is nothing for the same application (ids compare case-insensitively) or without a record", () => {
    expect(movedCredential(recorded, a)).toBeUndefined();
    expect(movedCredential(recorded, blueprint("renamed", APP_A.toUpperCase()))).toBeUndefined();
    expect(movedCredential(identity(), blueprint("a", APP_B))).toBeUndefined();
  });

  it("sameApplication compares tenant and client id", () => {
    expect(
      sameApplication({ tenantId: TENANT, clientId: APP_A }, { tenantId: TENANT, clientId: APP_B }),
    ).toBe(false);
  });
});

describe("credentialHeir", () => {
  const me = identity("agent");
  const heir = identity("heir");

  it("is another identity of the same ServiceAccount and blueprint that the blueprint admits", () => {
    expect(credentialHeir(me, [me, heir], "a", a, undefined)?.metadata.name).toBe("heir");
  });

  it("is no heir when it is being deleted, binds another ServiceAccount or blueprint, or is not admitted", () => {
    expect(
      credentialHeir(me, [me, identity("heir", undefined, {}, true)], "a", a, undefined),
    ).toBeUndefined();
    expect(
      credentialHeir(
        me,
        [me, identity("heir", undefined, { serviceAccountName: "other" })],
        "a",
        a,
        undefined,
      ),
    ).toBeUndefined();
    expect(
      credentialHeir(
        me,
        [me, identity("heir", undefined, { blueprintRef: { name: "b" } })],
        "a",
        a,
        undefined,
      ),
    ).toBeUndefined();
    // Un-admitting the namespace revokes for every identity of it: none of them is an heir.
    const unadmitting = blueprint("a", APP_A, { admits: [{ namespaces: ["elsewhere"] }] });
    expect(credentialHeir(me, [me, heir], "a", unadmitting, undefined)).toBeUndefined();
    // An agent the blueprint no longer allows is no heir either.
    expect(
      credentialHeir(
        me,
        [me, identity("heir", undefined, { agent: { clientId: "44444444-4444-4444-4444-444444444444" } })],
        "a",
        a,
        undefined,
      ),
    ).toBeUndefined();
    // The blueprint is gone (or is not the one named): nobody can rely on it.
    expect(credentialHeir(me, [me, heir], "a", undefined, undefined)).toBeUndefined();
    expect(credentialHeir(me, [me, heir], "a", blueprint("b", APP_B), undefined)).toBeUndefined();
  });

  it("only removes credentials of the namespace's own ServiceAccounts", () => {
    expect(namespaceSubjectPrefix("ns")).toBe("system:serviceaccount:ns:");
  });
});

describe("the status of a revocation", () => {
  const refused = {
    reason: "NamespaceNotAdmitted",
    message: "AgentIdentityBlueprint a does not admit namespace ns.",
  };
  const recorded = identity("agent", {
    federatedCredential: { ...credential, blueprint: blueprintRecord(a) },
  });
  const now = new Date("2026-01-01T00:00:00Z");

  it("drops the record, says Ready=False with the refusal and that the credential was removed", () => {
    const obs: Observations = {
      ...initialObservations(),
      refused,
      federation: {
        state: "revoked",
        reason: "CredentialRemoved",
        message: "It was removed from blueprint a.",
      },
    };
    const status = desiredStatus(recorded, obs, now);
    expect(status.federatedCredential).toBeUndefined();
    const ready = status.conditions?.find((c) => c.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "NamespaceNotAdmitted" });
    expect(ready?.message).toBe(`${refused.message} It was removed from blueprint a.`);
    expect(status.conditions?.find((c) => c.type === "FederationConfigured")).toMatchObject({
      status: "False",
      reason: "CredentialRemoved",
    });

    // The next reconcile has nothing left to remove: the conditions stay as they are (no flapping, no event).
    const after = identity("agent", status);
    const again = desiredStatus(after, { ...initialObservations(), refused }, now);
    expect(again.conditions).toEqual(status.conditions);
  });

  it("keeps the record while the removal fails, so that it is retried", () => {
    const obs: Observations = {
      ...initialObservations(),
      refused,
      federation: {
        state: "graphFailed",
        credential: { ...credential, blueprint: blueprintRecord(a) },
        reason: "CredentialNotRevoked",
        message: "Graph said no.",
        retry: true,
      },
    };
    const status = desiredStatus(recorded, obs, now);
    expect(status.federatedCredential?.blueprint).toEqual(blueprintRecord(a));
    expect(status.conditions?.find((c) => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "NamespaceNotAdmitted",
      message: refused.message,
    });
  });

  it("a refusal without a revocation keeps the plain refusal and a pending federation", () => {
    const status = desiredStatus(identity(), { ...initialObservations(), refused }, now);
    expect(status.conditions?.find((c) => c.type === "Ready")?.message).toBe(refused.message);
    expect(status.conditions?.find((c) => c.type === "FederationConfigured")?.reason).toBe("Pending");
  });
});
