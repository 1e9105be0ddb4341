import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ANNOTATION_IDENTITY, FINALIZER_FEDERATED_CREDENTIAL } from "../../src/api/constants.ts";
import type { AgentIdentity } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import { useControlPlane } from "../support/controlplane.ts";
import {
  BLUEPRINT_SECRET,
  blueprintCredentials,
  emulatorAdmin,
  FULL_BLUEPRINT,
  graphCredentialAs,
  LogCapture,
  startTestEmulator,
  startTestManager,
} from "./operator-fixture.ts";
import {
  AGENT,
  BLUEPRINT,
  condition,
  createIdentity,
  ensureCrd,
  eventsFor,
  TENANT,
} from "./operator-support.ts";

const cp = useControlPlane({ namespacePrefix: "op" });
const kube = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
const managers: RunningManager[] = [];
let logs = new LogCapture();
const JWT = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/;

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(cp);
});
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
  // Tokens never reach the manager's logs, whatever happened in the test (log level trace).
  expect(logs.text()).not.toMatch(JWT);
  expect(logs.text()).not.toContain(BLUEPRINT_SECRET);
  logs = new LogCapture();
});
afterAll(async () => {
  await emu?.close();
  await kube.close();
});

async function manager(extra: Parameters<typeof startTestManager>[4] = {}): Promise<RunningManager> {
  const m = await startTestManager(cp, emu, cp.namespace, logs, extra);
  managers.push(m);
  return m;
}

const read = (name: string) => kube.getOptional<AgentIdentity>(identityPath(cp.namespace, name));
async function until(name: string, type: string, status: string, reason?: string): Promise<AgentIdentity> {
  let identity: AgentIdentity | undefined;
  await expect
    .poll(
      async () => {
        identity = await read(name);
        const c = condition(identity, type);
        // On failure, the last value shown is the resource's conditions.
        return c?.status === status && (!reason || c.reason === reason)
          ? true
          : (identity?.status?.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}: ${c.message}`) ??
              []);
      },
      { message: `${name}: ${type}=${status}${reason ? ` (${reason})` : ""}` },
    )
    .toBe(true);
  if (!identity) throw new Error(`${name} disappeared`);
  return identity;
}

async function addCredentialForIssuer(name: string, subject: string): Promise<void> {
  await emulatorAdmin(
    emu,
    "POST",
    `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials`,
    {
      name,
      issuer: cp.issuerUrl,
      subject,
      audiences: ["api://AzureADTokenExchange"],
    },
  );
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
  it("makes an identity Ready and Verified through a real TokenRequest token, then False with the AADSTS code once the credential is gone", async () => {
    const subject = `system:serviceaccount:${cp.namespace}:agent-a`;
    const ficName = `test-${cp.namespace}`;
    await addCredentialForIssuer(ficName, subject);
    await manager({ verificationPolicy: { intervalMs: 1500, retryMs: 1500 } });
    await createIdentity(kube, cp.namespace, "agent-a", { instance: `${emu.url}/`, agentId: AGENT });

    const ready = await until("agent-a", "Ready", "True");
    expect(condition(ready, "Verified")).toMatchObject({
      status: "True",
      reason: "TokenIssued",
      observedGeneration: 1,
    });
    expect(condition(ready, "FederationConfigured")).toMatchObject({ status: "True", reason: "Verified" });
    expect(ready.status?.serviceAccount).toBe("agent-a");
    expect(ready.status?.observedGeneration).toBe(1);
    // The manager's cache drops managedFields; its status writes leave the server's bookkeeping intact.
    const managers = (ready.metadata as { managedFields?: Array<{ subresource?: string }> }).managedFields;
    expect(managers?.some((m) => m.subresource === "status")).toBe(true);
    expect(ready.status?.federatedCredential).toMatchObject({
      issuer: cp.issuerUrl,
      subject,
      audiences: ["api://AzureADTokenExchange"],
    });
    expect(ready.status?.federatedCredential?.azCommand).toContain(
      `az ad app federated-credential create --id ${BLUEPRINT}`,
    );

    const sa = await kube.get<{
      metadata: {
        annotations?: Record<string, string>;
        ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
      };
    }>(serviceAccountPath(cp.namespace, "agent-a"));
    expect(sa.metadata.annotations?.[ANNOTATION_IDENTITY]).toBe("agent-a");
    expect(sa.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: "AgentIdentity", name: "agent-a", uid: ready.metadata.uid }),
    ]);
    const counters = await emulatorAdmin<{ byClient: Record<string, Record<string, number>> }>(
      emu,
      "GET",
      "/_emulator/counters",
    );
    expect(counters.byClient[BLUEPRINT]?.["client_credentials+fmi_path"]).toBeGreaterThan(0);

    await emulatorAdmin(
      emu,
      "DELETE",
      `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials/${ficName}`,
    );
    const failed = await until("agent-a", "Verified", "False");
    const verified = condition(failed, "Verified");
    expect(verified?.message).toMatch(/AADSTS7002(1|11|13)/);
    expect(verified?.message).toContain("az ad app federated-credential create");
    expect(condition(failed, "Ready")).toMatchObject({ status: "False" });
    const events = await eventsFor(kube, cp.namespace, "agent-a");
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(["Ready", "TokenIssued"]));
    expect(events.some((e) => e.type === "Warning" && /AADSTS/.test(e.message ?? ""))).toBe(true);
    await expectNoTokenLeak("agent-a");
  });

  it("reports a missing Secret, then verifies with the blueprint's secret once it exists", async () => {
    await manager();
    await createIdentity(kube, cp.namespace, "with-secret", {
      instance: `${emu.url}/`,
      blueprint: {
        clientId: BLUEPRINT,
        credential: { clientSecret: { secretRef: { name: "bp", key: "secret" } } },
      },
    });
    const missing = await until("with-secret", "Ready", "False", "SecretNotFound");
    expect(condition(missing, "Ready")?.message).toContain("Secret bp");
    await expect
      .poll(async () =>
        (await eventsFor(kube, cp.namespace, "with-secret")).some(
          (e) => e.reason === "SecretNotFound" && e.type === "Warning",
        ),
      )
      .toBe(true);
    await kube.create(`/api/v1/namespaces/${cp.namespace}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "bp" },
      stringData: { secret: BLUEPRINT_SECRET },
    });
    // Nothing watches Secrets (least privilege): the identity is retried with backoff until the Secret
    // exists, with no change to the AgentIdentity.
    const ok = await until("with-secret", "Ready", "True");
    expect(condition(ok, "Verified")).toMatchObject({ status: "True" });
    expect(condition(ok, "FederationConfigured")).toMatchObject({ status: "True", reason: "NotRequired" });
    await expectNoTokenLeak("with-secret");
  });

  it("gives both identities that bind one ServiceAccount a Conflict, and clears it when one goes", async () => {
    await manager({ verify: false });
    await createIdentity(kube, cp.namespace, "first", { serviceAccountName: "shared" });
    await createIdentity(kube, cp.namespace, "second", { serviceAccountName: "shared" });
    await until("first", "Ready", "False", "Conflict");
    const second = await until("second", "Ready", "False", "Conflict");
    expect(condition(second, "Ready")?.message).toContain("AgentIdentity first");
    await expect
      .poll(async () => (await eventsFor(kube, cp.namespace, "second")).some((e) => e.reason === "Conflict"))
      .toBe(true);
    await kube.delete(identityPath(cp.namespace, "second"));
    const first = await until("first", "Ready", "True");
    expect(condition(first, "Verified")).toMatchObject({ status: "Unknown", reason: "VerificationDisabled" });
  });

  it("requires an existing ServiceAccount when createServiceAccount is false", async () => {
    await manager({ verify: false });
    await createIdentity(kube, cp.namespace, "byo", { createServiceAccount: false });
    await until("byo", "Ready", "False", "ServiceAccountNotFound");
    await kube.create(serviceAccountPath(cp.namespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "byo" },
    });
    await until("byo", "Ready", "True");
    const sa = await kube.get<{
      metadata: { annotations?: Record<string, string>; ownerReferences?: unknown[] };
    }>(serviceAccountPath(cp.namespace, "byo"));
    expect(sa.metadata.annotations?.[ANNOTATION_IDENTITY]).toBe("byo");
    expect(sa.metadata.ownerReferences).toBeUndefined();
  });

  it("in Graph mode creates the federated credential, verifies through it, and removes it on deletion", async () => {
    await manager();
    await createIdentity(kube, cp.namespace, "graph", {
      instance: `${emu.url}/`,
      federation: { mode: "Graph" },
    });
    const ready = await until("graph", "Verified", "True");
    expect(ready.metadata.finalizers).toContain(FINALIZER_FEDERATED_CREDENTIAL);
    expect(condition(ready, "FederationConfigured")).toMatchObject({ status: "True" });
    const name = ready.status?.federatedCredential?.name;
    expect(name).toBeDefined();
    const created = (await blueprintCredentials(emu)).find((c) => c.name === name);
    expect(created).toMatchObject({
      issuer: cp.issuerUrl,
      subject: `system:serviceaccount:${cp.namespace}:graph`,
      audiences: ["api://AzureADTokenExchange"],
    });

    await kube.delete(identityPath(cp.namespace, "graph"));
    await expect.poll(() => read("graph"), { message: "the AgentIdentity to be gone" }).toBeUndefined();
    expect((await blueprintCredentials(emu)).find((c) => c.name === name)).toBeUndefined();
  });

  it("turns Graph's 20-credential limit and a Graph refusal into conditions, not crashes", async () => {
    await manager();
    await createIdentity(kube, cp.namespace, "full", {
      instance: `${emu.url}/`,
      blueprint: { clientId: FULL_BLUEPRINT },
      federation: { mode: "Graph" },
    });
    const full = await until("full", "FederationConfigured", "False", "CredentialLimitReached");
    expect(condition(full, "FederationConfigured")?.message).toContain("20");
    expect(condition(full, "Ready")).toMatchObject({ status: "False", reason: "CredentialLimitReached" });
    expect(await blueprintCredentials(emu, FULL_BLUEPRINT)).toHaveLength(20);

    // A manager whose own app has no Graph permission.
    await Promise.all(managers.splice(0).map((m) => m.stop()));
    await manager({
      graph: { baseUrl: emu.url, credentialFor: graphCredentialAs(emu, BLUEPRINT, BLUEPRINT_SECRET) },
    });
    await createIdentity(kube, cp.namespace, "denied", {
      instance: `${emu.url}/`,
      federation: { mode: "Graph" },
    });
    const denied = await until("denied", "FederationConfigured", "False", "GraphAccessDenied");
    expect(condition(denied, "FederationConfigured")?.message).toContain(
      "AgentIdentityBlueprint.AddRemoveCreds.All",
    );
    await expect
      .poll(async () =>
        (await eventsFor(kube, cp.namespace, "denied")).some((e) => e.reason === "GraphAccessDenied"),
      )
      .toBe(true);
  });

  it("writes nothing while idle, across resyncs", async () => {
    // A resync every second (10 minutes by default): each replays the cache, so every identity is
    // reconciled again, and that must write nothing and ask the API server nothing.
    const m = await manager({ verify: false, resyncIntervalMs: 1000 });
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
    const versions = await Promise.all(
      ["idle-a", "idle-b", "idle-c"].map(async (n) => (await read(n))?.metadata.resourceVersion),
    );
    // Idle through three replays of the three identities.
    const start = await reconciles();
    await expect.poll(reconciles, { timeout: 20_000 }).toBeGreaterThanOrEqual(start + 9);
    const after = m.requestCounts();
    expect(writes(before)).toBeGreaterThan(0);
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
    const a = await manager({ verify: false, identity: "replica-a" });
    const b = await manager({ verify: false, identity: "replica-b" });
    await expect.poll(() => a.isLeader() !== b.isLeader(), { message: "exactly one leader" }).toBe(true);
    const leader = a.isLeader() ? a : b;
    const follower = leader === a ? b : a;
    await createIdentity(kube, cp.namespace, "before");
    await until("before", "Ready", "True");
    expect(follower.isLeader()).toBe(false);
    await leader.stop();
    managers.splice(managers.indexOf(leader), 1);
    await expect
      .poll(() => follower.isLeader(), { message: "the follower to lead", timeout: 15_000 })
      .toBe(true);
    await createIdentity(kube, cp.namespace, "after");
    await until("after", "Ready", "True");
  });

  it("serves /healthz, /readyz and /metrics", async () => {
    const m = await manager({ verify: false });
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
