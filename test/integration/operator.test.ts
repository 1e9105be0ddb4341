import { describe, expect, it } from "vitest";
import { FINALIZER, LABEL_SERVICE_ACCOUNT_BINDING } from "../../src/api/constants.ts";
import type { AgentIdentityBlueprintSpec } from "../../src/api/types.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import {
  BLUEPRINT_SECRET,
  blueprintCredentials,
  emulatorAdmin,
  emulatorRequests,
  FOREIGN_BLUEPRINT,
  FULL_BLUEPRINT,
  onEmulator,
} from "./operator-fixture.ts";
import { JWT, useOperatorHarness } from "./operator-harness.ts";
import {
  AGENT,
  BLUEPRINT,
  condition,
  createBlueprint,
  createIdentity,
  eventsFor,
  TENANT,
} from "./operator-support.ts";

const op = useOperatorHarness({
  namespacePrefix: "op",
  // Tokens never reach the manager's logs, whatever happened in the test (log level trace).
  logsMustNotHold: [JWT, BLUEPRINT_SECRET],
});
const { cp, admin: kube, read } = op;

/** The test's blueprint (named after its namespace), on the emulator's cloud. */
const blueprint = (spec: Partial<AgentIdentityBlueprintSpec> = {}) =>
  createBlueprint(kube, cp.namespace, { ...onEmulator(op.emu), ...spec });
/** A blueprint on a managed identity: Ready without any call to Entra (the sidecar proves it at run time). */
const managedIdentityBlueprint = () => blueprint({ credential: { managedIdentity: {} } });

/** Polls until the identity's condition `type` has `status` (and `reason`, when given). */
const until = (name: string, type: string, status: string, reason?: string) =>
  op.until(
    name,
    (i) => condition(i, type)?.status === status && (!reason || condition(i, type)?.reason === reason),
    `${type}=${status}${reason ? ` (${reason})` : ""}`,
  );

/** How many reconciles the manager ran: with a short resync, a clock made of events, not of sleeps. */
async function reconcilesOf(m: RunningManager): Promise<number> {
  const metric = await m.metrics.registry.getSingleMetric("agentid_reconciles_total")?.get();
  return metric?.values.reduce((n, v) => n + v.value, 0) ?? 0;
}

/** Status, events and logs must never hold a token. */
async function expectNoTokenLeak(name: string): Promise<void> {
  const identity = await read(name);
  expect(JSON.stringify(identity?.status ?? {})).not.toMatch(JWT);
  const events = await eventsFor(kube, cp.namespace, name);
  expect(JSON.stringify(events)).not.toMatch(JWT);
  expect(JSON.stringify(events)).not.toContain(BLUEPRINT_SECRET);
}

describe("the operator against a real API server and the Entra emulator", () => {
  it("Manual mode: Ready only once a real TokenRequest token is exchanged; False with the AADSTS code once the credential is gone", async () => {
    const subject = `system:serviceaccount:${cp.namespace}:agent-a`;
    const ficName = `test-${cp.namespace}`;
    await blueprint();
    await op.manager({ verificationPolicy: { intervalMs: 1500, retryMs: 1500 } });
    await createIdentity(kube, cp.namespace, "agent-a");
    // Not added yet: Entra refuses, so the identity is not Ready.
    const missing = await until("agent-a", "Ready", "False", "CredentialMissing");
    expect(condition(missing, "FederationConfigured")?.message).toContain(
      "az ad app federated-credential create",
    );
    await op.trustOnBlueprint(ficName, "agent-a");

    const ready = await until("agent-a", "Ready", "True");
    expect(condition(ready, "Verified")).toMatchObject({
      status: "True",
      reason: "TokenIssued",
      observedGeneration: 1,
    });
    expect(condition(ready, "FederationConfigured")).toMatchObject({ status: "True", reason: "Verified" });
    // The manager's cache drops managedFields; its status writes leave the server's bookkeeping intact.
    const managers = (ready.metadata as { managedFields?: Array<{ subresource?: string }> }).managedFields;
    expect(managers?.some((m) => m.subresource === "status")).toBe(true);
    expect(ready.status).toMatchObject({
      serviceAccount: "agent-a",
      observedGeneration: 1,
      agent: { clientId: AGENT },
      federatedCredential: { issuer: cp.issuerUrl, subject, audiences: ["api://AzureADTokenExchange"] },
    });
    // Manual mode and a named agent: nothing in Entra is the operator's, so no finalizer.
    expect(ready.metadata.finalizers ?? []).not.toContain(FINALIZER);

    const sa = await kube.get<{
      metadata: {
        labels?: Record<string, string>;
        annotations?: Record<string, string>;
        ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
      };
    }>(serviceAccountPath(cp.namespace, "agent-a"));
    expect(sa.metadata.labels?.[LABEL_SERVICE_ACCOUNT_BINDING]).toBe("agent-a");
    expect(sa.metadata.annotations ?? {}).toEqual({});
    expect(sa.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: "AgentIdentity", name: "agent-a", uid: ready.metadata.uid }),
    ]);

    await emulatorAdmin(
      op.emu,
      "DELETE",
      `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials/${ficName}`,
    );
    const failed = await until("agent-a", "Verified", "False");
    expect(condition(failed, "Verified")?.message).toMatch(/AADSTS7002(1|11|13)/);
    expect(condition(failed, "Ready")).toMatchObject({ status: "False", reason: "CredentialMissing" });
    const events = await eventsFor(kube, cp.namespace, "agent-a");
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(["Ready", "TokenIssued"]));
    expect(events.some((e) => e.type === "Warning" && /AADSTS/.test(e.message ?? ""))).toBe(true);
    await expectNoTokenLeak("agent-a");
  });

  it("Manual mode without verification is Unknown, not Ready: nobody has proven the credential", async () => {
    await blueprint();
    await op.manager({ verify: false });
    await createIdentity(kube, cp.namespace, "unproven");
    const unknown = await until("unproven", "Ready", "Unknown", "ManualSetupUnverified");
    expect(condition(unknown, "Verified")).toMatchObject({
      status: "Unknown",
      reason: "VerificationDisabled",
    });
  });

  it("a development secret, where the blueprint allows it: SecretNotFound, then Ready once it exists", async () => {
    await blueprint({
      admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT] }, developmentSecrets: true }],
    });
    await op.manager();
    await createIdentity(kube, cp.namespace, "with-secret", {
      clientSecretRef: { name: "bp", key: "secret" },
    });
    const missing = await until("with-secret", "Ready", "False", "SecretNotFound");
    expect(condition(missing, "Ready")?.message).toContain("Secret bp");
    await kube.create(`/api/v1/namespaces/${cp.namespace}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "bp" },
      stringData: { secret: BLUEPRINT_SECRET },
    });
    // Nothing watches Secrets (least privilege): the identity is retried with backoff until it exists.
    const ok = await until("with-secret", "Ready", "True");
    expect(condition(ok, "Verified")).toMatchObject({ status: "True" });
    expect(condition(ok, "FederationConfigured")).toMatchObject({ status: "True", reason: "NotRequired" });
    await expectNoTokenLeak("with-secret");
  });

  it("two identities for one ServiceAccount: the older keeps it and stays Ready, the newer is ServiceAccountTaken until the older goes", async () => {
    await managedIdentityBlueprint();
    await op.manager({ verify: false });
    await createIdentity(kube, cp.namespace, "first", { serviceAccountName: "shared" });
    await until("first", "Ready", "True");
    await createIdentity(kube, cp.namespace, "second", { serviceAccountName: "shared" });
    const second = await until("second", "Ready", "False", "ServiceAccountTaken");
    expect(condition(second, "Ready")?.message).toContain("AgentIdentity first");
    expect(condition(await read("first"), "Ready")).toMatchObject({ status: "True" });
    await kube.delete(identityPath(cp.namespace, "first"));
    await until("second", "Ready", "True");
  });

  it("uses an existing ServiceAccount only once it opts in with the label", async () => {
    await managedIdentityBlueprint();
    await kube.create(serviceAccountPath(cp.namespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "byo" },
    });
    await op.manager({ verify: false });
    await createIdentity(kube, cp.namespace, "byo");
    const refused = await until("byo", "Ready", "False", "ServiceAccountNotOptedIn");
    expect(condition(refused, "Ready")?.message).toContain(`${LABEL_SERVICE_ACCOUNT_BINDING}=byo`);
    await kube.patch(serviceAccountPath(cp.namespace, "byo"), "merge", {
      metadata: { labels: { [LABEL_SERVICE_ACCOUNT_BINDING]: "byo" } },
    });
    await until("byo", "Ready", "True");
    const sa = await kube.get<{ metadata: { ownerReferences?: unknown[] } }>(
      serviceAccountPath(cp.namespace, "byo"),
    );
    expect(sa.metadata.ownerReferences).toBeUndefined();
  });

  it("Graph mode writes exactly issuer + subject, verifies through it, recreates it when deleted in Entra, and removes it on deletion", async () => {
    await blueprint({ federation: { management: "Graph" } });
    await op.manager({ graphRecheckMs: 500 });
    await createIdentity(kube, cp.namespace, "graph");
    const ready = await until("graph", "Verified", "True");
    expect(condition(ready, "Ready")).toMatchObject({ status: "True" });
    expect(ready.metadata.finalizers).toContain(FINALIZER);
    const name = ready.status?.federatedCredential?.name ?? "";
    const created = (await blueprintCredentials(op.emu)).find((c) => c.name === name);
    expect(created).toMatchObject({
      issuer: cp.issuerUrl,
      subject: `system:serviceaccount:${cp.namespace}:graph`,
      audiences: ["api://AzureADTokenExchange"],
    });

    await emulatorAdmin(
      op.emu,
      "DELETE",
      `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials/${name}`,
    );
    await expect
      .poll(async () => (await blueprintCredentials(op.emu)).some((c) => c.name === name), {
        message: "the credential to be recreated",
      })
      .toBe(true);

    await kube.delete(identityPath(cp.namespace, "graph"));
    await expect.poll(() => read("graph"), { message: "the AgentIdentity to be gone" }).toBeUndefined();
    expect((await blueprintCredentials(op.emu)).find((c) => c.name === name)).toBeUndefined();
  });

  it("Graph's 20-credential limit and an application the operator does not own become conditions, and are not retried", async () => {
    await blueprint({ clientId: FULL_BLUEPRINT, federation: { management: "Graph" } });
    // A resync every second replays every identity to the reconciler: the clock of this test.
    const m = await op.manager({ resyncIntervalMs: 1000 });
    await createIdentity(kube, cp.namespace, "full");
    const full = await until("full", "Ready", "False", "CredentialLimitReached");
    expect(condition(full, "FederationConfigured")?.message).toContain("20");
    expect(await blueprintCredentials(op.emu, FULL_BLUEPRINT)).toHaveLength(20);
    // A permanent refusal is not retried until the spec changes: through an update that is not a spec
    // change and two resyncs, the emulator sees nothing more.
    const before = await emulatorRequests(op.emu);
    await kube.patch(identityPath(cp.namespace, "full"), "merge", {
      metadata: { annotations: { nudge: "1" } },
    });
    const start = await reconcilesOf(m);
    await expect.poll(() => reconcilesOf(m), { timeout: 20_000 }).toBeGreaterThanOrEqual(start + 3);
    expect(await emulatorRequests(op.emu)).toBe(before);
    // A spec change tries again (and meets the same limit).
    await kube.patch(identityPath(cp.namespace, "full"), "merge", { spec: { sidecar: { port: 5001 } } });
    await expect.poll(() => emulatorRequests(op.emu)).toBeGreaterThan(before);
  });

  it("Application.ReadWrite.OwnedBy does not reach a blueprint the operator does not own", async () => {
    await blueprint({ clientId: FOREIGN_BLUEPRINT, federation: { management: "Graph" } });
    await op.manager();
    await createIdentity(kube, cp.namespace, "denied");
    const denied = await until("denied", "Ready", "False", "GraphAccessDenied");
    expect(condition(denied, "Ready")?.message).toContain("Application.ReadWrite.OwnedBy");
    await expect
      .poll(async () =>
        (await eventsFor(kube, cp.namespace, "denied")).some((e) => e.reason === "GraphAccessDenied"),
      )
      .toBe(true);
    expect(await blueprintCredentials(op.emu, FOREIGN_BLUEPRINT)).toEqual([]);
  });

  it("writes nothing while idle, across resyncs", async () => {
    await managedIdentityBlueprint();
    // A resync every second (10 minutes by default): each replays the cache, so every identity is
    // reconciled again, and that must write nothing and ask the API server nothing.
    const m = await op.manager({ verify: false, resyncIntervalMs: 1000 });
    const reconciles = async () =>
      (await m.metrics.registry.getSingleMetric("agentid_reconciles_total")?.get())?.values.reduce(
        (n, v) => n + v.value,
        0,
      ) ?? 0;
    for (const name of ["idle-a", "idle-b", "idle-c"]) await createIdentity(kube, cp.namespace, name);
    for (const name of ["idle-a", "idle-b", "idle-c"]) await until(name, "Ready", "True");
    // Settle: the reconciles that follow the manager's own status writes have run by the next replay.
    const settled = await reconciles();
    await expect.poll(reconciles, { timeout: 20_000 }).toBeGreaterThanOrEqual(settled + 3);
    const writes = (counts: Record<string, number>) =>
      Object.entries(counts)
        .filter(([k]) => !k.startsWith("GET ") && !k.startsWith("WATCH ") && !k.endsWith(" leases"))
        .reduce((n, [, v]) => n + v, 0);
    const nonLease = (c: Record<string, number>) =>
      Object.entries(c)
        .filter(([k]) => !k.endsWith(" leases"))
        .reduce((n, [, v]) => n + v, 0);
    const before = m.requestCounts();
    const emulated = await emulatorRequests(op.emu);
    const versions = await Promise.all(
      ["idle-a", "idle-b", "idle-c"].map(async (n) => (await read(n))?.metadata.resourceVersion),
    );
    // Idle through three replays of the three identities.
    const start = await reconciles();
    await expect.poll(reconciles, { timeout: 20_000 }).toBeGreaterThanOrEqual(start + 9);
    const after = m.requestCounts();
    expect(writes(before)).toBeGreaterThan(0);
    expect(await emulatorRequests(op.emu)).toBe(emulated);
    expect(writes(after)).toBe(writes(before));
    // No relist either: a resync replays the cache from memory.
    expect(nonLease(after)).toBe(nonLease(before));
    expect(
      await Promise.all(
        ["idle-a", "idle-b", "idle-c"].map(async (n) => (await read(n))?.metadata.resourceVersion),
      ),
    ).toEqual(versions);
  });

  it("runs one leader among two managers and fails over when the leader stops", async () => {
    await managedIdentityBlueprint();
    const a = await op.manager({ verify: false, identity: "replica-a" });
    const b = await op.manager({ verify: false, identity: "replica-b" });
    await expect.poll(() => a.isLeader() !== b.isLeader(), { message: "exactly one leader" }).toBe(true);
    const leader = a.isLeader() ? a : b;
    const follower = leader === a ? b : a;
    await createIdentity(kube, cp.namespace, "before");
    await until("before", "Ready", "True");
    expect(follower.isLeader()).toBe(false);
    await leader.stop();
    await expect
      .poll(() => follower.isLeader(), { message: "the follower to lead", timeout: 15_000 })
      .toBe(true);
    await createIdentity(kube, cp.namespace, "after");
    await until("after", "Ready", "True");
  });

  it("serves /healthz, /readyz and /metrics", async () => {
    await managedIdentityBlueprint();
    const m = await op.manager({ verify: false });
    await createIdentity(kube, cp.namespace, "metrics");
    await until("metrics", "Ready", "True");
    const get = async (path: string) => {
      const res = await fetch(`${path === "/metrics" ? m.metricsUrl : m.url}${path}`);
      return { status: res.status, text: await res.text() };
    };
    expect(await get("/healthz")).toEqual({ status: 200, text: "ok" });
    expect(await get("/readyz")).toEqual({ status: 200, text: "ok" });
    const metrics = (await get("/metrics")).text;
    expect(metrics).toMatch(/agentid_reconciles_total\{result="success"\} [1-9]/);
    expect(metrics).toContain("agentid_reconcile_duration_seconds_bucket");
    expect(metrics).toContain("agentid_workqueue_depth");
    expect(metrics).toMatch(/agentid_identities\{condition="Ready",status="True"\} 1/);
    expect(metrics).toContain("agentid_leader 1");
  });
});
