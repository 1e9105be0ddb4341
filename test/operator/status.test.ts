import { describe, expect, it } from "vitest";
import type { AgentIdentity, Condition } from "../../src/api/types.ts";
import { conditionTransitions, mergeConditions } from "../../src/operator/conditions.ts";
import { DEFAULT_VERIFICATION_POLICY, verificationDueAt } from "../../src/operator/schedule.ts";
import { decideConditions, desiredStatus, jsonEqual, type Observations } from "../../src/operator/status.ts";

const credential = {
  name: "agentid-ns-agent-0123456789ab",
  issuer: "https://issuer",
  subject: "system:serviceaccount:ns:agent",
  audiences: ["api://AzureADTokenExchange"],
  azCommand: "az ad app federated-credential create --id b --parameters '{}'",
};

const identity: AgentIdentity = {
  metadata: { name: "agent", namespace: "ns", generation: 3 },
  spec: {
    tenantId: "11111111-1111-1111-1111-111111111111",
    blueprint: { clientId: "22222222-2222-2222-2222-222222222222" },
    serviceAccountName: "agent",
  },
};

const healthy: Observations = {
  conflicts: [],
  serviceAccount: { state: "ready", created: true },
  secret: { state: "notRequired" },
  federation: { state: "manual", credential },
  verification: { state: "verified", fingerprint: "f" },
};

type Row = [string, Partial<Observations>, Record<string, [string, string]>];

describe("decideConditions", () => {
  const rows: Row[] = [
    [
      "all good",
      {},
      {
        Ready: ["True", "Ready"],
        Verified: ["True", "TokenIssued"],
        FederationConfigured: ["True", "Verified"],
      },
    ],
    [
      "an invalid object (old CRD) wins over everything",
      { invalid: ["spec.tenantId must be a GUID"], conflicts: ["other"] },
      { Ready: ["False", "InvalidSpec"] },
    ],
    [
      "conflict wins over the rest, and federation waits",
      {
        conflicts: ["other"],
        federation: { state: "skipped", message: "m" },
        verification: { state: "pending", message: "m" },
      },
      {
        Ready: ["False", "Conflict"],
        FederationConfigured: ["Unknown", "Pending"],
        Verified: ["Unknown", "Pending"],
      },
    ],
    [
      "missing ServiceAccount",
      { serviceAccount: { state: "missing" } },
      { Ready: ["False", "ServiceAccountNotFound"] },
    ],
    [
      "missing Secret",
      { secret: { state: "problem", reason: "SecretNotFound", message: "m" } },
      { Ready: ["False", "SecretNotFound"] },
    ],
    [
      "issuer unknown",
      { federation: { state: "issuerUnknown", message: "m" } },
      { Ready: ["False", "IssuerUnknown"], FederationConfigured: ["False", "IssuerUnknown"] },
    ],
    [
      "missing federated credential in Manual mode",
      {
        verification: {
          state: "failed",
          fingerprint: "f",
          failure: {
            reason: "NoMatchingFederatedCredential",
            code: "AADSTS70021",
            message: "AADSTS70021: no",
          },
        },
      },
      {
        Ready: ["False", "CredentialMissing"],
        Verified: ["False", "NoMatchingFederatedCredential"],
        FederationConfigured: ["False", "CredentialMissing"],
      },
    ],
    [
      "another Entra refusal",
      {
        verification: {
          state: "failed",
          fingerprint: "f",
          failure: { reason: "BlueprintNotFound", message: "m" },
        },
      },
      { Ready: ["False", "VerificationFailed"], FederationConfigured: ["Unknown", "ManualSetupRequired"] },
    ],
    [
      "Entra unreachable keeps Ready",
      { verification: { state: "unreachable", fingerprint: "f", message: "m" } },
      { Ready: ["True", "Ready"], Verified: ["Unknown", "EntraUnreachable"] },
    ],
    [
      "verification off",
      { verification: { state: "disabled" } },
      { Ready: ["True", "Ready"], Verified: ["Unknown", "VerificationDisabled"] },
    ],
    [
      "Graph mode created the credential",
      { federation: { state: "graph", credential, reason: "CredentialCreated", message: "m" } },
      { FederationConfigured: ["True", "CredentialCreated"] },
    ],
    [
      "Graph limit reached",
      { federation: { state: "graphFailed", credential, reason: "CredentialLimitReached", message: "m" } },
      {
        Ready: ["False", "CredentialLimitReached"],
        FederationConfigured: ["False", "CredentialLimitReached"],
      },
    ],
  ];
  for (const [name, patch, expected] of rows) {
    it(name, () => {
      const got = Object.fromEntries(
        decideConditions(identity, { ...healthy, ...patch }).map((c) => [c.type, [c.status, c.reason]]),
      );
      expect(got).toMatchObject(expected);
    });
  }

  it("keeps the previous Verified condition when no verification was due", () => {
    const previous: AgentIdentity = {
      ...identity,
      status: {
        conditions: [
          {
            type: "Verified",
            status: "False",
            reason: "BlueprintNotFound",
            message: "m",
            lastTransitionTime: "2026-01-01T00:00:00Z",
          },
        ],
      },
    };
    const verified = decideConditions(previous, { ...healthy, verification: { state: "unchanged" } }).find(
      (c) => c.type === "Verified",
    );
    expect(verified).toMatchObject({ status: "False", reason: "BlueprintNotFound" });
  });
});

describe("desiredStatus", () => {
  const t1 = new Date("2026-01-01T00:00:00Z");
  const t2 = new Date("2026-01-01T01:00:00Z");

  it("is identical when nothing changed, so the operator writes nothing", () => {
    const first = desiredStatus(identity, healthy, t1);
    const again = desiredStatus(
      { ...identity, status: first },
      { ...healthy, verification: { state: "unchanged" } },
      t2,
    );
    expect(jsonEqual(first, again)).toBe(true);
  });

  it("publishes observedGeneration, the ServiceAccount and the federated credential", () => {
    const status = desiredStatus(identity, healthy, t1);
    expect(status).toMatchObject({
      observedGeneration: 3,
      serviceAccount: "agent",
      federatedCredential: credential,
      lastVerification: { fingerprint: "f" },
    });
    expect(status.conditions?.every((c) => c.observedGeneration === 3)).toBe(true);
  });
});

describe("mergeConditions / conditionTransitions", () => {
  const old: Condition[] = [
    {
      type: "Ready",
      status: "True",
      reason: "Ready",
      message: "a",
      lastTransitionTime: "2026-01-01T00:00:00Z",
    },
  ];
  it("keeps lastTransitionTime while the status holds and moves it on a change", () => {
    const now = new Date("2026-02-02T00:00:00Z");
    expect(
      mergeConditions(old, [{ type: "Ready", status: "True", reason: "Ready", message: "b" }], 1, now)[0]
        ?.lastTransitionTime,
    ).toBe("2026-01-01T00:00:00Z");
    expect(
      mergeConditions(old, [{ type: "Ready", status: "False", reason: "Conflict", message: "b" }], 1, now)[0]
        ?.lastTransitionTime,
    ).toBe("2026-02-02T00:00:00Z");
  });
  it("reports a transition on a status or reason change only", () => {
    const same = mergeConditions(
      old,
      [{ type: "Ready", status: "True", reason: "Ready", message: "other words" }],
      1,
      new Date(),
    );
    expect(conditionTransitions(old, same)).toEqual([]);
    const changed = mergeConditions(
      old,
      [{ type: "Ready", status: "False", reason: "Conflict", message: "m" }],
      1,
      new Date(),
    );
    expect(conditionTransitions(old, changed)).toEqual([
      { type: "Ready", from: "True", to: "False", reason: "Conflict", message: "m" },
    ]);
  });
});

describe("verificationDueAt", () => {
  const policy = DEFAULT_VERIFICATION_POLICY;
  const at = "2026-01-01T00:00:00Z";
  const withStatus = (status: "True" | "False", fingerprint = "f"): AgentIdentity => ({
    ...identity,
    status: {
      lastVerification: { time: at, fingerprint },
      conditions: [{ type: "Verified", status, reason: "r", message: "m", lastTransitionTime: at }],
    },
  });
  it.each([
    ["never verified", identity, 0],
    ["inputs changed", withStatus("True", "old"), 0],
    ["verified: the interval later", withStatus("True"), Date.parse(at) + policy.intervalMs],
    ["failed: the retry delay later", withStatus("False"), Date.parse(at) + policy.retryMs],
  ])("%s", (_n, value, due) => {
    expect(verificationDueAt(value, "f", policy)).toBe(due);
  });
});
