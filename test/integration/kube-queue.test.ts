import { describe, expect, it } from "vitest";
import { createKubeClient } from "../../src/kube/client.ts";
import { createInformer } from "../../src/kube/informer.ts";
import { createWorkQueue } from "../../src/kube/queue.ts";
import { keyOf, splitKey } from "../../src/kube/store.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { type ConfigMap, configMap, createNamespace, testLogger } from "./kube-support.ts";

/**
 * The controller pattern end to end: informer events feed the work queue while many writers change
 * objects at once. Every key must converge on its last state, and no key may be processed twice at once.
 */

const cp = connectControlPlane();

describe("work queue fed by an informer under concurrent writes", () => {
  it("processes every key to its final state without overlapping runs of one key", async () => {
    const client = createKubeClient(cp.kubeConfig);
    const logger = testLogger("kube-queue-test");
    const ns = await createNamespace(client, "queue");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    const informer = createInformer<ConfigMap>({ kubeConfig: cp.kubeConfig, client, path, logger });
    const queue = createWorkQueue({ logger });
    let adds = 0;
    const enqueue = (obj: ConfigMap) => {
      adds++;
      queue.add(keyOf(obj));
    };
    informer.onAdd(enqueue);
    informer.onUpdate(enqueue);
    const active = new Set<string>();
    const overlaps: string[] = [];
    const processed = new Map<string, string>();
    let runs = 0;
    const worker = async (key: string) => {
      if (active.has(key)) overlaps.push(key);
      active.add(key);
      runs++;
      // Yield so that other workers and new events interleave with this run.
      await new Promise((r) => setTimeout(r, 2));
      const { namespace, name } = splitKey(key);
      processed.set(key, informer.get(namespace, name)?.data?.n ?? "?");
      active.delete(key);
    };
    await informer.start();
    try {
      const names = Array.from({ length: 60 }, (_, i) => `cm-${i}`);
      const writeAll = (n: number) =>
        Promise.all(
          names.map((name) => client.patch(`${path}/${name}`, "merge", { data: { n: String(n) } })),
        );
      const allAt = (n: string) => () =>
        names.every((name) => processed.get(`${ns}/${name}`) === n) &&
        queue.length() === 0 &&
        queue.processing() === 0;

      // De-duplication, before any worker runs: four events per key (a create, three updates) queue
      // each key once, and each key then runs once, at its final state.
      await Promise.all(names.map((name) => client.create(path, configMap(ns, name, { n: "0" }))));
      for (const n of [1, 2, 3]) await writeAll(n);
      await expect.poll(() => adds, { timeout: 30_000 }).toBe(names.length * 4);
      expect(queue.length()).toBe(names.length);
      queue.run(worker, 4);
      await expect.poll(allAt("3"), { timeout: 30_000 }).toBe(true);
      expect(runs).toBe(names.length);

      // Writes racing the workers: a key changed while it is being processed runs again afterwards,
      // never twice at once, and every key converges on its last state.
      for (const n of [4, 5, 6]) await writeAll(n);
      await expect.poll(allAt("6"), { timeout: 30_000 }).toBe(true);
      expect(overlaps).toEqual([]);
      expect(adds).toBe(names.length * 7);
      expect(runs).toBeGreaterThan(names.length);
    } finally {
      await queue.shutdown();
      informer.stop();
      await client.close();
    }
  });
});
