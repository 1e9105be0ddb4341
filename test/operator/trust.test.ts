import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { desiredBlueprintStatus } from "../../src/operator/blueprint-reconciler.ts";
import { refusal } from "../../src/operator/reconciler.ts";
import {
  adoptable,
  judgeServiceAccount,
  type ServiceAccountObject,
} from "../../src/operator/service-account.ts";
import { AGENT, blueprint, identity, OTHER_AGENT } from "../support/api-fixtures.ts";

/** The operator's trust decisions, from the caches alone (no request is made before they pass). */
describe("refusal", () => {
  const me = identity({}, "me");
  me.metadata.creationTimestamp = "2026-01-01T00:00:01Z";
  const none: AgentIdentity[] = [];

  it("admits an identity its blueprint admits and that holds its ServiceAccount", () => {
    expect(refusal(me, blueprint(), {}, [me], [])).toBeUndefined();
  });

  it.each([
    ["a missing blueprint", undefined, "BlueprintNotFound"],
    ["an invalid blueprint (old CRD)", blueprint({ tenantId: "contoso" }), "BlueprintNotReady"],
    [
      "a Custom host not allow-listed",
      blueprint({ cloud: "Custom", authorityHost: "https://evil.example/" }),
      "AuthorityHostNotAllowed",
    ],
    [
      "another namespace's blueprint",
      blueprint({ admits: [{ namespaces: ["other"], agents: { allowed: [AGENT] } }] }),
      "NamespaceNotAdmitted",
    ],
    [
      "an agent not on the list",
      blueprint({ admits: [{ namespaces: ["ns"], agents: { allowed: [OTHER_AGENT] } }] }),
      "AgentNotAllowed",
    ],
  ])("refuses %s", (_name, bp, reason) => {
    expect(refusal(me, bp, {}, none, [])).toMatchObject({ reason });
  });

  it("refuses identities in kube-system and the manager's own namespace, even under an empty namespaceSelector", () => {
    // An empty selector matches every namespace, including those the webhooks never see.
    const everyone = blueprint({ admits: [{ namespaceSelector: {}, agents: { allowed: [AGENT] } }] });
    const at = (namespace: string) => {
      const i = identity({}, "me");
      i.metadata.namespace = namespace;
      return i;
    };
    expect(refusal(at("team-a"), everyone, {}, none, [], "agentid-system")).toBeUndefined();
    for (const ns of ["kube-system", "agentid-system"]) {
      const refused = refusal(at(ns), everyone, {}, none, [], "agentid-system");
      expect(refused).toMatchObject({ reason: "NamespaceExcluded" });
      expect(refused?.message).toContain("Create the AgentIdentity in an application namespace");
    }
    // kube-system is refused even when the manager's namespace is not known, and first of all checks.
    expect(refusal(at("kube-system"), undefined, {}, none, [])).toMatchObject({
      reason: "NamespaceExcluded",
    });
  });

  it("lets an allow-listed Custom host through", () => {
    const bp = blueprint({ cloud: "Custom", authorityHost: "https://login.example.test" });
    expect(refusal(me, bp, {}, none, ["https://login.example.test/"])).toBeUndefined();
  });

  it("admits by namespace labels when the blueprint selects them", () => {
    const bp = blueprint({
      admits: [{ namespaceSelector: { matchLabels: { team: "a" } }, agents: { allowed: [AGENT] } }],
    });
    expect(refusal(me, bp, { team: "a" }, none, [])).toBeUndefined();
    expect(refusal(me, bp, { team: "b" }, none, [])).toMatchObject({ reason: "NamespaceNotAdmitted" });
    expect(refusal(me, bp, undefined, none, [])).toMatchObject({ reason: "NamespaceNotAdmitted" });
  });

  it("refuses an identity beyond its namespace's cap, after every other check", () => {
    const older = identity({}, "older");
    older.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
    const bp = blueprint({
      admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] }, maxIdentities: 1 }],
    });
    expect(refusal(older, bp, {}, [older, me], [])).toBeUndefined();
    expect(refusal(me, bp, {}, [older, me], [])).toMatchObject({ reason: "NamespaceLimitReached" });
    // An identity refused for another reason is told that reason, not the cap.
    const stranger = identity({ agent: { clientId: OTHER_AGENT } }, "stranger");
    expect(refusal(stranger, bp, {}, [older, stranger], [])).toMatchObject({ reason: "AgentNotAllowed" });
  });

  it("refuses the newer of two identities for one ServiceAccount, naming the older", () => {
    const older = identity({ serviceAccountName: "me" }, "older");
    older.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
    expect(refusal(me, blueprint(), {}, [me, older], [])).toMatchObject({
      reason: "ServiceAccountTaken",
      message: expect.stringContaining("AgentIdentity older"),
    });
    expect(refusal(older, blueprint(), {}, [me, older], [])).toBeUndefined();
  });
});

describe("ServiceAccounts", () => {
  const me = identity({}, "me");
  me.metadata.uid = "uid-me";
  const sa = (
    labels: Record<string, string> | undefined,
    owners?: Array<{ uid: string }>,
  ): ServiceAccountObject => ({
    metadata: {
      name: "me",
      namespace: "ns",
      ...(labels ? { labels } : {}),
      ...(owners
        ? {
            ownerReferences: owners.map((o) => ({
              apiVersion: "agentid.io/v1alpha1",
              kind: "AgentIdentity",
              name: "x",
              uid: o.uid,
            })),
          }
        : {}),
    },
  });

  it("uses an account labelled for this identity, and refuses one that is not", () => {
    expect(judgeServiceAccount(me, sa({ "agentid.io/agentidentity": "me" }))).toMatchObject({
      state: "ready",
      created: false,
    });
    expect(
      judgeServiceAccount(me, sa({ "agentid.io/agentidentity": "me" }, [{ uid: "uid-me" }])),
    ).toMatchObject({
      state: "ready",
      created: true,
    });
    expect(judgeServiceAccount(me, sa(undefined))).toMatchObject({ state: "notOptedIn" });
    expect(judgeServiceAccount(me, sa({ "agentid.io/agentidentity": "other" }))).toMatchObject({
      state: "notOptedIn",
      message: expect.stringContaining("labelled for other"),
    });
  });

  it("takes over only an account the operator made for an identity that is gone", () => {
    const managed = { "app.kubernetes.io/managed-by": "agentid", "agentid.io/agentidentity": "gone" };
    expect(adoptable(sa(managed, [{ uid: "uid-gone" }]), new Set(["uid-me"]))).toBe(true);
    expect(adoptable(sa(managed, [{ uid: "uid-live" }]), new Set(["uid-live"]))).toBe(false);
    // A user's account, even labelled, or one without an AgentIdentity owner, is never taken over.
    expect(adoptable(sa({ "agentid.io/agentidentity": "gone" }, [{ uid: "uid-gone" }]), new Set())).toBe(
      false,
    );
    expect(adoptable(sa(managed), new Set())).toBe(false);
  });
});

describe("desiredBlueprintStatus", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  it("is Ready with the authority host, issuer and counts", () => {
    const status = desiredBlueprintStatus(
      blueprint(),
      {
        authorityAllowed: true,
        issuer: { ok: true, issuer: "https://issuer" },
        identities: 3,
        federatedCredentials: 2,
      },
      now,
    );
    expect(status).toMatchObject({
      observedGeneration: 1,
      authorityHost: "https://login.microsoftonline.com/",
      issuer: "https://issuer",
      identities: 3,
      federatedCredentials: 2,
      conditions: [{ type: "Ready", status: "True", reason: "Ready" }],
    });
  });
  it.each([
    [{ authorityAllowed: false }, "AuthorityHostNotAllowed"],
    [{ authorityAllowed: true, issuer: { ok: false as const, message: "m" } }, "IssuerUnknown"],
    [{ authorityAllowed: true, problems: ["spec.tenantId must be a GUID"] }, "InvalidSpec"],
  ])("is not Ready: %j", (obs, reason) => {
    const status = desiredBlueprintStatus(
      blueprint(),
      { identities: 0, federatedCredentials: 0, ...obs },
      now,
    );
    expect(status.conditions?.[0]).toMatchObject({ status: "False", reason });
    expect(status.authorityHost === undefined || obs.authorityAllowed).toBe(true);
  });
});
