import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import type { ComponentFactory } from "../../src/manager/component.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { apiServerAddress, viaPort } from "./kube-support.ts";
import { startTcpProxy, type TcpProxy } from "./kube-tcp-proxy.ts";
import { LogCapture, startTestEmulator, startTestManager } from "./operator-fixture.ts";
import { condition, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

/**
 * Losing the lease stops and drains every leader-only worker before the manager campaigns again, and a
 * replica that is not the leader sends no write: its API server is made unreachable (a TCP relay that
 * stops answering) for longer than the renew deadline, while a second replica takes over.
 */
const cp = useControlPlane({ namespacePrefix: "mgr-leader" });
const admin = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
let proxy: TcpProxy | undefined;
const managers: RunningManager[] = [];
const logs = new LogCapture();

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(cp);
});
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await emu?.close();
  await admin.close();
});

const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(cp.namespace, name));
const readyOf = async (name: string) => condition(await read(name), "Ready")?.status;
/** Requests that change something, leader election's own Lease writes aside. */
const writes = (m: RunningManager) =>
  Object.entries(m.requestCounts())
    .filter(([k]) => !/^(GET|WATCH) /.test(k) && !k.endsWith(" leases"))
    .reduce((n, [, v]) => n + v, 0);
const reconciles = async (m: RunningManager) =>
  (await m.metrics.registry.getSingleMetric("agentid_reconciles_total")?.get())?.values.reduce(
    (n, v) => n + v.value,
    0,
  ) ?? 0;

/**
 * A leader-only component that keeps one request through the fenced client in flight, as a reconcile
 * waiting on the API server would, and records what happened to it.
 */
function probe(timeline: string[]): ComponentFactory {
  return (ctx) => {
    let loop: Promise<void> | undefined;
    return {
      name: "probe",
      needsLeaderElection: true,
      start(signal) {
        timeline.push("probe started");
        loop = (async () => {
          while (!signal.aborted) {
            try {
              await ctx.leaderKube.get(`/api/v1/namespaces/${cp.namespace}/configmaps`);
            } catch (error) {
              timeline.push(`probe request ended: ${(error as Error).name}`);
            }
            await new Promise((r) => setTimeout(r, 100));
          }
        })();
      },
      async stop() {
        await loop;
        timeline.push("probe drained");
      },
      ready: () => true,
    };
  };
}

describe("the manager losing its lease", () => {
  it("stops and drains its workers, writes nothing while not leading, and leads again later", async () => {
    // A blueprint on a managed identity: identities are Ready without any call to Entra.
    await createBlueprint(admin, cp.namespace, { credential: { managedIdentity: {} } });
    const { host, port } = apiServerAddress(cp.kubeConfig);
    proxy = await startTcpProxy(host, port);
    const timeline: string[] = [];
    const a = await startTestManager(
      { ...cp, kubeConfig: viaPort(cp.kubeConfig, proxy.port) },
      emu,
      cp.namespace,
      logs,
      {
        verify: false,
        identity: "replica-a",
        components: [probe(timeline)],
      },
    );
    managers.push(a);
    await expect.poll(() => a.isLeader(), { timeout: 15_000 }).toBe(true);
    await createIdentity(admin, cp.namespace, "one");
    await expect.poll(() => readyOf("one"), { timeout: 15_000 }).toBe("True");
    expect(timeline).toEqual(["probe started"]);

    // The API server stops answering a: longer than the renew deadline (3 s in these tests).
    proxy.blackhole();
    await expect.poll(() => a.isLeader(), { timeout: 15_000 }).toBe(false);
    // The probe's request, stuck in the blackhole, was aborted by the fence, and the probe drained.
    await expect.poll(() => timeline.at(-1), { timeout: 5_000 }).toBe("probe drained");
    expect(timeline.slice(0, 2)).toEqual(["probe started", "probe request ended: AbortError"]);
    const writesWhenDemoted = writes(a);
    const reconcilesWhenDemoted = await reconciles(a);
    expect(reconcilesWhenDemoted).toBeGreaterThan(0);

    // b reaches the API server directly and takes over once a's lease has expired.
    const b = await startTestManager(cp, emu, cp.namespace, logs, { verify: false, identity: "replica-b" });
    managers.push(b);
    await expect.poll(() => b.isLeader(), { timeout: 15_000 }).toBe(true);
    await createIdentity(admin, cp.namespace, "two");
    await expect.poll(() => readyOf("two"), { timeout: 15_000 }).toBe("True");

    // a's network comes back: its caches catch up (both identities Ready in its cache), it campaigns and
    // sees b as the leader, and it reconciles nothing and writes nothing.
    proxy.restore();
    const readyInCache = async () =>
      (await a.metrics.registry.getSingleMetric("agentid_identities")?.get())?.values.find(
        (v) => v.labels.condition === "Ready" && v.labels.status === "True",
      )?.value;
    await expect.poll(readyInCache, { timeout: 30_000 }).toBe(2);
    await admin.patch(identityPath(cp.namespace, "one"), "merge", { metadata: { labels: { touched: "1" } } });
    // Three more of a's election rounds (one a second) after the change: time enough to misbehave.
    const rounds = a.requestCounts()["GET leases"] ?? 0;
    await expect
      .poll(() => a.requestCounts()["GET leases"] ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(rounds + 2);
    expect(a.isLeader()).toBe(false);
    expect(writes(a)).toBe(writesWhenDemoted);
    expect(await reconciles(a)).toBe(reconcilesWhenDemoted);
    expect(timeline.filter((t) => t === "probe started")).toHaveLength(1);

    // b leaves cleanly; a takes over with a fresh work queue and reconciles again.
    await b.stop();
    managers.splice(managers.indexOf(b), 1);
    await expect.poll(() => a.isLeader(), { timeout: 15_000 }).toBe(true);
    expect(timeline.filter((t) => t === "probe started")).toHaveLength(2);
    await createIdentity(admin, cp.namespace, "three");
    await expect.poll(() => readyOf("three"), { timeout: 15_000 }).toBe("True");
    expect(await reconciles(a)).toBeGreaterThan(reconcilesWhenDemoted);
  });
});
