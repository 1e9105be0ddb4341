import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, startControlPlane } from "../../src/dev/controlplane.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { createInformer, type WatchRestartReason } from "../../src/kube/informer.ts";
import {
  type ApiServerRestarter,
  apiServerAddress,
  apiServerRestarter,
  type ConfigMap,
  configMap,
  createNamespace,
  testLogger,
  viaPort,
} from "./kube-support.ts";
import { startTcpProxy } from "./kube-tcp-proxy.ts";

/**
 * kube-apiserver restarts, on a private control plane (restarting the shared one would disturb other
 * test files). A restarted API server starts a new watch cache, so a watch resuming from an older
 * resourceVersion gets 410 Expired: only a relist that diffs against the cache can deliver what happened
 * meanwhile, deletes included.
 */

let cp: ControlPlane;
let restarter: ApiServerRestarter;
let client: KubeClient;
const logger = testLogger("kube-restart-test");

beforeAll(async () => {
  // Without a watch grace period, kube-apiserver waits a full minute for open watches when it stops.
  cp = await startControlPlane({ apiserverArgs: { "shutdown-watch-termination-grace-period": "2s" } });
  restarter = apiServerRestarter(cp);
  client = createKubeClient(cp.kubeConfig, { requestTimeoutMs: 5_000 });
});

afterAll(async () => {
  await client?.close();
  await restarter?.stop();
  await cp?.stop();
});

describe("informer across kube-apiserver restarts", { timeout: 180_000 }, () => {
  it("relists after 410 and delivers the deletes, updates and adds it missed", async () => {
    const ns = await createNamespace(client, "restart-gap");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    for (const name of ["keep", "change", "remove"])
      await client.create(path, configMap(ns, name, { n: "0" }));
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy = await startTcpProxy(host, port);
    const events: string[] = [];
    const restarts: WatchRestartReason[] = [];
    const informer = createInformer<ConfigMap>({
      kubeConfig: viaPort(cp.kubeConfig, proxy.port),
      path,
      logger,
      backoff: { baseMs: 200, maxMs: 2_000, factor: 2, jitter: 0.5 },
      onWatchRestart: (reason) => restarts.push(reason),
    });
    informer.onAdd((o) => events.push(`add ${o.metadata.name}`));
    informer.onUpdate((o) => events.push(`update ${o.metadata.name} n=${o.data?.n}`));
    informer.onDelete((o) => events.push(`delete ${o.metadata.name}`));
    await informer.start();
    try {
      // A change seen through the watch proves the watch is open before we cut it off.
      await client.patch(`${path}/keep`, "merge", { metadata: { labels: { seen: "yes" } } });
      await expect
        .poll(() => events.includes("update keep n=0"), { message: "the watch to deliver" })
        .toBe(true);
      // Cut the informer off (its watch goes silent), change things it cannot see, then restart the server.
      expect(proxy.freeze()).toBeGreaterThan(0);
      await client.delete(`${path}/remove`);
      await client.patch(`${path}/change`, "merge", { data: { n: "1" } });
      await client.create(path, configMap(ns, "new", { n: "0" }));
      // The server would wait up to a minute for the silent connection while shutting down; cut its side.
      expect(proxy.severUpstream()).toBeGreaterThan(0);
      await restarter.restart();
      proxy.dropAll();
      await expect
        .poll(
          () =>
            events.includes("delete remove") &&
            events.includes("update change n=1") &&
            events.includes("add new"),
          { message: "the missed delete, update and add" },
        )
        .toBe(true);
      expect(restarts).toContain("gone");
      expect(
        informer
          .list(ns)
          .map((o) => o.metadata.name)
          .sort(),
      ).toEqual(["change", "keep", "new"]);
      // The relist re-delivered nothing that had not changed.
      expect(events.filter((e) => e.includes("keep"))).toEqual(["add keep", "update keep n=0"]);
    } finally {
      informer.stop();
      await proxy.close();
    }
  });

  it("loses no update made while the API server restarts under a busy writer", async () => {
    const ns = await createNamespace(client, "restart-busy");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "c", { n: "0" }));
    const seen: number[] = [];
    const informer = createInformer<ConfigMap>({
      kubeConfig: cp.kubeConfig,
      path,
      logger,
      backoff: { baseMs: 200, maxMs: 2_000, factor: 2, jitter: 0.5 },
    });
    informer.onUpdate((o) => seen.push(Number(o.data?.n)));
    await informer.start();
    let last = 0;
    let writing = true;
    // Writes every value it can; a write that fails while the server is down is retried with the same value.
    const writer = (async () => {
      while (writing) {
        try {
          await client.patch(`${path}/c`, "merge", { data: { n: String(last + 1) } });
          last += 1;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();
    try {
      await expect.poll(() => seen.length >= 5, { message: "a few updates before the restart" }).toBe(true);
      await restarter.restart();
      const afterRestart = last;
      await expect.poll(() => last >= afterRestart + 5, { message: "updates after the restart" }).toBe(true);
      writing = false;
      await writer;
      await expect.poll(() => seen.at(-1) === last, { message: `the final value ${last}` }).toBe(true);
      // Values only move forward: nothing old is re-delivered as new, and the last write arrived.
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1] ?? 0);
      expect(informer.get(ns, "c")?.data?.n).toBe(String(last));
    } finally {
      writing = false;
      await writer;
      informer.stop();
    }
  });
});
