import { describe, expect, it } from "vitest";
import type { AgentIdentity, Condition } from "../../src/api/types.ts";
import { conditionTransitions, mergeConditions } from "../../src/operator/conditions.ts";
import {
  DEFAULT_VERIFICATION_POLICY,
  jitterSeed,
  parseRetryAfter,
  stableFraction,
  transientOnsetMs,
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

  const withReason = (
    reason: string,
    status: "False" | "Unknown" = "False",
    since = at,
    time = at,
  ): AgentIdentity => ({
    ...identity,
    status: {
      lastVerification: { time, fingerprint: "f" },
      conditions: [{ type: "Verified", status, reason, message: "m", lastTransitionTime: since }],
    },
  });
  const seedAt = (time: string) => jitterSeed("f", time);
  it.each([
    ["IssuerUnreachable", "False"],
    ["EntraUnreachable", "Unknown"],
  ] as const)(
    "transient (%s): the backoff for how long the failure had lasted, from the status alone",
    (reason, status) => {
      // The first failure (the condition changed when it was written): the shortest wait.
      const first = Date.parse(at) + transientRetryDelay({ failingForMs: 0, seed: seedAt(at) }, policy);
      expect(verificationDueAt(withReason(reason, status), "f", policy)).toBe(first);
      expect(first - Date.parse(at)).toBeGreaterThanOrEqual(4_000);
      expect(first - Date.parse(at)).toBeLessThanOrEqual(6_000);
      // Failing since 40 s before the last attempt: about 40 s more (what a restarted manager reads too).
      const later = "2026-01-01T00:00:40Z";
      const due = verificationDueAt(withReason(reason, status, at, later), "f", policy);
      expect(due - Date.parse(later)).toBe(
        transientRetryDelay({ failingForMs: 40_000, seed: seedAt(later) }, policy),
      );
      expect(due - Date.parse(later)).toBeGreaterThanOrEqual(32_000);
      expect(due - Date.parse(later)).toBeLessThanOrEqual(48_000);
      // Failing for a day: about --verify-retry (jittered below it), never longer.
      const dayLater = "2026-01-02T00:00:00Z";
      const long =
        verificationDueAt(withReason(reason, status, at, dayLater), "f", policy) - Date.parse(dayLater);
      expect(long).toBeLessThanOrEqual(policy.retryMs);
      expect(long).toBeGreaterThanOrEqual(policy.retryMs * 0.8);
    },
  );

  it("transient: Entra's Retry-After (kept by the reconciler) delays it further, up to --verify-retry", () => {
    const value = withReason("EntraUnreachable", "Unknown");
    const base = verificationDueAt(value, "f", policy);
    expect(verificationDueAt(value, "f", policy, base - 1)).toBe(base);
    expect(verificationDueAt(value, "f", policy, Date.parse(at) + 120_000)).toBe(Date.parse(at) + 120_000);
    expect(verificationDueAt(value, "f", policy, Date.parse(at) + 86_400_000)).toBe(
      Date.parse(at) + policy.retryMs,
    );
  });

  it.each(["NoMatchingFederatedCredential", "TokenRequestForbidden", "InvalidClientSecret"])(
    "needs a person (%s): the long wait",
    (reason) => {
      expect(verificationDueAt(withReason(reason), "f", policy)).toBe(Date.parse(at) + policy.retryMs);
    },
  );
});

describe("transientRetryDelay", () => {
  const policy = DEFAULT_VERIFICATION_POLICY;
  /** One seed: its jitter factor (0.8 to 1.2) is computed here, so the steps below are exact. */
  const seed = "f@2026-01-01T00:00:00Z";
  const jitter = 0.8 + 0.4 * stableFraction(seed);

  it("waits as long as the failure has lasted: at least 5 s, at most --verify-retry", () => {
    const delays = [0, 1_000, 5_000, 10_000, 20_000, 40_000, 300_000, 600_000, 86_400_000].map(
      (failingForMs) => transientRetryDelay({ failingForMs, seed }, policy),
    );
    expect(delays).toEqual(
      [5_000, 5_000, 5_000, 10_000, 20_000, 40_000, 300_000, 600_000, 600_000].map((ms) =>
        Math.min(Math.round(ms * jitter), 600_000),
      ),
    );
  });

  it("so attempt after attempt the waits double, as a backoff should", () => {
    let failingForMs = 0;
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      const wait = transientRetryDelay({ failingForMs, seed: `s${i}` }, policy);
      waits.push(wait);
      failingForMs += wait;
    }
    // 5 s, then about the time spent so far each time: it reaches the long wait after about 10 minutes.
    expect(waits[0]).toBeLessThanOrEqual(6_000);
    for (let i = 2; i < 8; i++) expect(waits[i]).toBeGreaterThan((waits[i - 1] ?? 0) * 1.3);
    expect(Math.max(...waits)).toBeLessThanOrEqual(600_000);
    expect(waits[11]).toBeGreaterThanOrEqual(480_000);
  });

  it("is jittered by at most 20%, the same for the same seed (a restart computes the same)", () => {
    const all = Array.from({ length: 200 }, (_, i) =>
      transientRetryDelay({ failingForMs: 0, seed: `k${i}` }, policy),
    );
    expect(Math.min(...all)).toBeGreaterThanOrEqual(4_000);
    expect(Math.max(...all)).toBeLessThanOrEqual(6_000);
    expect(new Set(all).size).toBeGreaterThan(50);
    expect(transientRetryDelay({ failingForMs: 0, seed: "k7" }, policy)).toBe(all[7]);
  });

  it("honours Retry-After as a floor, capped at --verify-retry", () => {
    expect(transientRetryDelay({ failingForMs: 0, seed, retryAfterMs: 90_000 }, policy)).toBe(90_000);
    expect(transientRetryDelay({ failingForMs: 0, seed, retryAfterMs: 1_000 }, policy)).toBe(
      transientRetryDelay({ failingForMs: 0, seed }, policy),
    );
    expect(transientRetryDelay({ failingForMs: 0, seed, retryAfterMs: 86_400_000 }, policy)).toBe(600_000);
  });

  it("never starts above a shorter --verify-retry", () => {
    const short = { intervalMs: 1, retryMs: 2_000, transientRetryMs: 5_000 };
    expect(transientRetryDelay({ failingForMs: 0, seed }, short)).toBeLessThanOrEqual(2_000);
    expect(transientRetryDelay({ failingForMs: 0, seed, retryAfterMs: 60_000 }, short)).toBe(2_000);
  });
});

describe("transientOnsetMs", () => {
  const now = Date.parse("2026-01-01T01:00:00Z");
  const since = "2026-01-01T00:59:00Z";
  const verified = (status: "True" | "False" | "Unknown") => ({
    type: "Verified",
    status,
    reason: "r",
    message: "m",
    lastTransitionTime: since,
  });
  it("counts from the condition's last change when the status stays (the write keeps that time)", () => {
    expect(transientOnsetMs(verified("Unknown"), "Unknown", now)).toBe(Date.parse(since));
    expect(transientOnsetMs(verified("False"), "False", now)).toBe(Date.parse(since));
  });
  it("starts now when the status changes or there is no condition", () => {
    expect(transientOnsetMs(verified("True"), "Unknown", now)).toBe(now);
    expect(transientOnsetMs(verified("False"), "Unknown", now)).toBe(now);
    expect(transientOnsetMs(undefined, "False", now)).toBe(now);
    expect(transientOnsetMs({ ...verified("False"), lastTransitionTime: "garbage" }, "False", now)).toBe(now);
  });
  it("never lies in the future (clock skew between replicas)", () => {
    expect(
      transientOnsetMs({ ...verified("False"), lastTransitionTime: "2026-01-01T02:00:00Z" }, "False", now),
    ).toBe(now);
  });
});

describe("transient backoff across Unknown and False", () => {
  const policy = DEFAULT_VERIFICATION_POLICY;
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  const start = Date.parse("2026-01-01T00:00:00Z");
  const since = iso(start);
  const condition = (status: "False" | "Unknown", reason: string, at: string): Condition => ({
    type: "Verified",
    status,
    reason,
    message: "m",
    lastTransitionTime: at,
  });

  it("keeps the onset of a transient run when the status flips, from transientSince", () => {
    const now = start + 60_000;
    const justNow = iso(now - 5_000);
    expect(transientOnsetMs(condition("Unknown", "EntraUnreachable", justNow), "False", now, since)).toBe(
      start,
    );
    expect(transientOnsetMs(condition("False", "IssuerUnreachable", justNow), "Unknown", now, since)).toBe(
      start,
    );
    // After a failure that was not transient, transientSince (if any were left) is not used.
    expect(transientOnsetMs(condition("False", "FederationMismatch", justNow), "Unknown", now, since)).toBe(
      now,
    );
    // Never in the future; unreadable falls back to the condition's own rule.
    expect(
      transientOnsetMs(condition("False", "IssuerUnreachable", justNow), "Unknown", now, iso(now + 60_000)),
    ).toBe(now);
    expect(transientOnsetMs(condition("False", "IssuerUnreachable", justNow), "Unknown", now, "x")).toBe(now);
  });

  it("grows the wait attempt after attempt while 503/429 (Unknown) and AADSTS50166 (False) alternate", () => {
    // The reconciler's loop on a fixed clock: each attempt's onset and delay, then the status written
    // (lastTransitionTime kept only while the status stays, as conditions.ts does).
    let t = start;
    let previous: Condition | undefined;
    let transientSince: string | undefined;
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const status = i % 2 === 0 ? "Unknown" : "False";
      const reason = status === "Unknown" ? "EntraUnreachable" : "IssuerUnreachable";
      const onset = transientOnsetMs(previous, status, t, transientSince);
      const delay = transientRetryDelay({ failingForMs: t - onset, seed: `f@${iso(t)}` }, policy);
      delays.push(delay);
      const at = previous?.status === status ? (previous.lastTransitionTime ?? iso(t)) : iso(t);
      previous = condition(status, reason, at);
      transientSince = iso(onset);
      t += delay;
    }
    expect(delays[0]).toBeLessThan(10_000);
    for (let i = 2; i < delays.length; i++) expect(delays[i]).toBeGreaterThan((delays[i - 2] ?? 0) * 1.2);
    expect(delays.at(-1)).toBeGreaterThan(60_000);
    expect(transientSince).toBe(since);
  });

  it("schedules the next attempt from transientSince after a flip (verificationDueAt)", () => {
    const attempt = iso(start + 120_000);
    const flipped: AgentIdentity = {
      ...identity,
      status: {
        lastVerification: { time: attempt, fingerprint: "f", transientSince: since },
        conditions: [condition("False", "IssuerUnreachable", attempt)],
      },
    };
    expect(verificationDueAt(flipped, "f", policy)).toBe(
      Date.parse(attempt) +
        transientRetryDelay({ failingForMs: 120_000, seed: jitterSeed("f", attempt) }, policy),
    );
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it.each([
    ["120", 120_000],
    [" 0 ", 0],
    ["Thu, 01 Jan 2026 00:01:30 GMT", 90_000],
    ["Wed, 31 Dec 2025 23:59:00 GMT", 0],
  ])("%j → %d ms", (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms);
  });
  it.each([undefined, "", "-5", "1.5", "soon", "2026-01-01T00:01:00Z"])("%j → undefined", (value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined();
  });
});
