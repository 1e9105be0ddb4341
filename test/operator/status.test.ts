import { describe, expect, it } from "vitest";
import type { AgentIdentity, Condition } from "../../src/api/types.ts";
import { conditionTransitions, mergeConditions } from "../../src/operator/conditions.ts";
import {
  DEFAULT_VERIFICATION_POLICY,
  transientRetryDelay,
  verificationDueAt,
} from "../../src/operator/schedule.ts";
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
    blueprintRef: { name: "bp" },
    agent: { clientId: "33333333-3333-3333-3333-333333333333" },
    serviceAccountName: "agent",
  },
};

const agent = { state: "known" as const, status: { clientId: "33333333-3333-3333-3333-333333333333" } };

const healthy: Observations = {
  credential: "workloadIdentity",
  serviceAccount: { state: "ready", created: true },
  secret: { state: "notRequired" },
  agent,
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
      {
        invalid: ["spec.agent must set exactly one of clientId or create"],
        refused: { reason: "NamespaceNotAdmitted", message: "m" },
      },
      { Ready: ["False", "InvalidSpec"] },
    ],
    [
      "a refusal (blueprint, admission, taken ServiceAccount) wins over the rest, and federation waits",
      {
        refused: { reason: "ServiceAccountTaken", message: "m" },
        serviceAccount: { state: "skipped" },
        agent: { state: "skipped" },
        federation: { state: "skipped", message: "m" },
        verification: { state: "pending", message: "m" },
      },
      {
        Ready: ["False", "ServiceAccountTaken"],
        FederationConfigured: ["Unknown", "Pending"],
        Verified: ["Unknown", "Pending"],
      },
    ],
    [
      "an existing ServiceAccount that did not opt in",
      { serviceAccount: { state: "notOptedIn", message: "m" } },
      { Ready: ["False", "ServiceAccountNotOptedIn"] },
    ],
    [
      "missing Secret",
      { secret: { state: "problem", reason: "SecretNotFound", message: "m" } },
      { Ready: ["False", "SecretNotFound"] },
    ],
    [
      "an agent being created",
      { agent: { state: "pending", message: "m" } },
      { Ready: ["Unknown", "AgentPending"] },
    ],
    [
      "an agent Graph refused to create",
      { agent: { state: "failed", reason: "AgentCreationAccessDenied", message: "m", retry: false } },
      { Ready: ["False", "AgentCreationAccessDenied"] },
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
      "Manual mode with Entra unreachable is not Ready, it is unknown",
      { verification: { state: "unreachable", fingerprint: "f", message: "m" } },
      { Ready: ["Unknown", "ManualSetupUnverified"], Verified: ["Unknown", "EntraUnreachable"] },
    ],
    [
      "a namespace without agentid-token-requester: Unknown with what to bind, in Manual mode",
      { verification: { state: "tokenForbidden", fingerprint: "f", message: "bind it" } },
      {
        Ready: ["Unknown", "TokenRequestForbidden"],
        Verified: ["Unknown", "TokenRequestForbidden"],
        FederationConfigured: ["Unknown", "ManualSetupRequired"],
      },
    ],
    [
      "…and in Graph mode, where the operator wrote the credential but verification cannot prove it",
      {
        federation: { state: "graph", credential, reason: "CredentialCreated", message: "m" },
        verification: { state: "tokenForbidden", fingerprint: "f", message: "bind it" },
      },
      { Ready: ["Unknown", "TokenRequestForbidden"], FederationConfigured: ["True", "CredentialCreated"] },
    ],
    [
      "an admission webhook refused the TokenRequest: its own reason, not what to bind, in Graph mode too",
      {
        federation: { state: "graph", credential, reason: "CredentialCreated", message: "m" },
        verification: {
          state: "tokenForbidden",
          reason: "TokenRequestDenied",
          fingerprint: "f",
          message: "denied",
        },
      },
      {
        Ready: ["Unknown", "TokenRequestDenied"],
        Verified: ["Unknown", "TokenRequestDenied"],
        FederationConfigured: ["True", "CredentialCreated"],
      },
    ],
    [
      "Manual mode with verification off is not Ready, it is unknown",
      { verification: { state: "disabled" } },
      { Ready: ["Unknown", "ManualSetupUnverified"], Verified: ["Unknown", "VerificationDisabled"] },
    ],
    [
      "Graph mode wrote the credential: Ready even while unverified",
      {
        federation: { state: "graph", credential, reason: "CredentialCreated", message: "m" },
        verification: { state: "pending", message: "m" },
      },
      { Ready: ["True", "Ready"], FederationConfigured: ["True", "CredentialCreated"] },
    ],
    [
      "Graph mode wrote it but Entra refuses it",
      {
        federation: { state: "graph", credential, reason: "CredentialUpToDate", message: "m" },
        verification: {
          state: "failed",
          fingerprint: "f",
          failure: { reason: "IssuerUnreachable", message: "m" },
        },
      },
      { Ready: ["False", "VerificationFailed"] },
    ],
    [
      "Graph limit reached",
      {
        federation: {
          state: "graphFailed",
          credential,
          reason: "CredentialLimitReached",
          message: "m",
          retry: false,
        },
      },
      {
        Ready: ["False", "CredentialLimitReached"],
        FederationConfigured: ["False", "CredentialLimitReached"],
      },
    ],
    [
      "a managed identity: the platform's federation, Ready",
      {
        credential: "managedIdentity",
        federation: { state: "notRequired", message: "m" },
        verification: { state: "notVerifiable", message: "m" },
      },
      { Ready: ["True", "Ready"], FederationConfigured: ["True", "NotRequired"] },
    ],
    [
      "a development secret not verified (verification off)",
      {
        credential: "clientSecret",
        secret: { state: "notChecked" },
        federation: { state: "notRequired", message: "m" },
        verification: { state: "disabled" },
      },
      { Ready: ["Unknown", "SecretUnverified"] },
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

  it("publishes observedGeneration, the ServiceAccount, the agent and the federated credential", () => {
    const status = desiredStatus(identity, healthy, t1);
    expect(status).toMatchObject({
      observedGeneration: 3,
      serviceAccount: "agent",
      agent: { clientId: "33333333-3333-3333-3333-333333333333" },
      federatedCredential: credential,
      lastVerification: { fingerprint: "f" },
    });
    expect(status.conditions?.every((c) => c.observedGeneration === 3)).toBe(true);
  });

  it("never forgets an agent the operator created, even while the identity is refused", () => {
    const created = { clientId: "44444444-4444-4444-4444-444444444444", objectId: "o", created: true };
    const withAgent: AgentIdentity = {
      ...identity,
      spec: { ...identity.spec, agent: { create: { displayName: "x" } } },
      status: { agent: created },
    };
    const refused = desiredStatus(
      withAgent,
      { ...healthy, refused: { reason: "NamespaceNotAdmitted", message: "m" }, agent: { state: "skipped" } },
      t1,
    );
    expect(refused.agent).toEqual(created);
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

  const withReason = (reason: string, status: "False" | "Unknown" = "False"): AgentIdentity => ({
    ...identity,
    status: {
      lastVerification: { time: at, fingerprint: "f" },
      conditions: [{ type: "Verified", status, reason, message: "m", lastTransitionTime: at }],
    },
  });
  it.each([
    ["IssuerUnreachable", "False"],
    ["EntraUnreachable", "Unknown"],
  ] as const)("transient (%s): the streak's delay later, else the first backoff step", (reason, status) => {
    const value = withReason(reason, status);
    const streak = { fingerprint: "f", attempts: 3, delayMs: 20_000 };
    expect(verificationDueAt(value, "f", policy, streak)).toBe(Date.parse(at) + 20_000);
    // A new leader or a restarted manager has no streak: the first step, not the long wait.
    expect(verificationDueAt(value, "f", policy)).toBe(Date.parse(at) + 5_000);
    // A streak for other inputs does not count.
    expect(verificationDueAt(value, "f", policy, { ...streak, fingerprint: "old" })).toBe(
      Date.parse(at) + 5_000,
    );
  });

  it.each(["NoMatchingFederatedCredential", "TokenRequestForbidden", "InvalidClientSecret"])(
    "needs a person (%s): the long wait, whatever a streak says",
    (reason) => {
      const streak = { fingerprint: "f", attempts: 1, delayMs: 5_000 };
      expect(verificationDueAt(withReason(reason), "f", policy, streak)).toBe(
        Date.parse(at) + policy.retryMs,
      );
    },
  );
});

describe("transientRetryDelay", () => {
  const policy = DEFAULT_VERIFICATION_POLICY;
  const middle = () => 0.5; // no jitter
  it("starts at seconds and doubles up to --verify-retry", () => {
    const delays = Array.from({ length: 10 }, (_, i) => transientRetryDelay(i + 1, policy, middle));
    expect(delays).toEqual([
      5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000, 600_000,
    ]);
  });

  it("is jittered by 20% and never above --verify-retry's ceiling plus jitter", () => {
    expect(transientRetryDelay(1, policy, () => 0)).toBe(4_000);
    expect(transientRetryDelay(1, policy, () => 1)).toBe(6_000);
    expect(transientRetryDelay(50, policy, () => 1)).toBe(720_000);
  });

  it("never starts above a shorter --verify-retry", () => {
    expect(transientRetryDelay(1, { intervalMs: 1, retryMs: 2_000, transientRetryMs: 5_000 }, middle)).toBe(
      2_000,
    );
  });
});
