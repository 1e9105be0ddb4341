import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { createInformer, type Informer, type WatchRestartReason } from "../../src/kube/informer.ts";
import {
  apiServerAddress,
  type ConfigMap,
  configMap,
  createNamespace,
  type KubeTestEnv,
  startKubeEnv,
  testLogger,
  viaPort,
} from "./kube-support.ts";
import { startTcpProxy } from "./kube-tcp-proxy.ts";

/**
 * The informer against a real kube-apiserver: it must deliver every change, whatever happens to the watch.
 * "Loses no update" is checked strictly where the API allows it: a watch resumed from its resourceVersion
 * replays every event, so the handler must see every counter value in order, without a gap.
 */

let env: KubeTestEnv;
let client: KubeClient;
const logger = testLogger("kube-informer-test");

beforeAll(async () => {
  env = await startKubeEnv();
  client = createKubeClient(env.kubeConfig);
});

afterAll(async () => {
  await client?.close();
  await env?.close();
});

interface Recorder {
  events: string[];
  counters: Map<string, number[]>;
  restarts: WatchRestartReason[];
}

function record(informer: Informer<ConfigMap>, recorder: Recorder): void {
  const seen = (obj: ConfigMap) => {
    const value = obj.data?.n;
    if (value === undefined) return;
    const list = recorder.counters.get(obj.metadata.name) ?? [];
    list.push(Number(value));
    recorder.counters.set(obj.metadata.name, list);
  };
  informer.onAdd((obj) => {
    recorder.events.push(`add ${obj.metadata.name}`);
    seen(obj);
  });
  informer.onUpdate((obj) => {
    recorder.events.push(`update ${obj.metadata.name}`);
    seen(obj);
  });
  informer.onDelete((obj) => recorder.events.push(`delete ${obj.metadata.name}`));
}

function newRecorder(): Recorder {
  return { events: [], counters: new Map(), restarts: [] };
}

async function bump(namespace: string, name: string, n: number): Promise<void> {
  await client.patch(`/api/v1/namespaces/${namespace}/configmaps/${name}`, "merge", {
    data: { n: String(n) },
  });
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("informer against kube-apiserver", () => {
  it("lists existing objects, then sees adds, updates and deletes", async () => {
    const ns = await createNamespace(client, "inf-basic");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "before", { n: "1" }));
    const recorder = newRecorder();
    const informer = createInformer<ConfigMap>({ kubeConfig: env.kubeConfig, path, logger });
    record(informer, recorder);
    await informer.start();
    expect(informer.hasSynced()).toBe(true);
    expect(informer.get(ns, "before")?.data).toEqual({ n: "1" });
    // Items of a list get the kind and apiVersion that the list response only names once.
    expect(informer.get(ns, "before")).toMatchObject({ apiVersion: "v1", kind: "ConfigMap" });
    try {
      await client.create(path, configMap(ns, "after", { n: "1" }));
      await bump(ns, "after", 2);
      await client.delete(`${path}/before`);
      await expect
        .poll(
          () => recorder.events.includes("delete before") && recorder.counters.get("after")?.includes(2),
          { message: "add, update and delete" },
        )
        .toBe(true);
      expect(recorder.events).toEqual(["add before", "add after", "update after", "delete before"]);
      expect(informer.list(ns).map((o) => o.metadata.name)).toEqual(["after"]);
      expect(informer.get(ns, "before")).toBeUndefined();
    } finally {
      informer.stop();
    }
  });

  it("lists in pages and honours a label selector in the list and the watch", async () => {
    const ns = await createNamespace(client, "inf-pages");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    const labelled = (name: string, team: string): ConfigMap => ({
      ...configMap(ns, name, { n: "0" }),
      metadata: { name, namespace: ns, labels: { team } },
    });
    await Promise.all(Array.from({ length: 23 }, (_, i) => client.create(path, labelled(`mine-${i}`, "a"))));
    await client.create(path, labelled("theirs", "b"));
    const requests: string[] = [];
    const pagedClient = createKubeClient(env.kubeConfig, {
      onRequest: (r) => requests.push(`${r.method} ${r.watch}`),
    });
    const informer = createInformer<ConfigMap>({
      kubeConfig: env.kubeConfig,
      client: pagedClient,
      path,
      logger,
      pageSize: 5,
      labelSelector: "team=a",
    });
    const added: string[] = [];
    informer.onAdd((o) => added.push(o.metadata.name));
    await informer.start();
    try {
      expect(informer.list(ns)).toHaveLength(23);
      expect(requests.filter((r) => r === "GET false")).toHaveLength(5);
      await client.create(path, labelled("theirs-2", "b"));
      await client.create(path, labelled("mine-new", "a"));
      await expect.poll(() => added.includes("mine-new"), { message: "the new matching object" }).toBe(true);
      expect(added.filter((n) => n.startsWith("theirs"))).toEqual([]);
    } finally {
      informer.stop();
      await pagedClient.close();
    }
  });

  it("loses no update when the server ends the watch every second", async () => {
    const ns = await createNamespace(client, "inf-timeout");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "c", { n: "0" }));
    const recorder = newRecorder();
    const informer = createInformer<ConfigMap>({
      kubeConfig: env.kubeConfig,
      path,
      logger,
      watchTimeoutSeconds: 1,
      onWatchRestart: (reason) => recorder.restarts.push(reason),
    });
    record(informer, recorder);
    await informer.start();
    try {
      for (const n of range(1, 60)) {
        await bump(ns, "c", n);
        await new Promise((r) => setTimeout(r, 40));
      }
      await expect
        .poll(() => recorder.counters.get("c")?.at(-1) === 60, { message: "the last update" })
        .toBe(true);
      expect(recorder.restarts.filter((r) => r === "closed").length).toBeGreaterThan(0);
      expect(recorder.counters.get("c")).toEqual(range(0, 60));
    } finally {
      informer.stop();
    }
  });

  it("loses no update when its connections are reset mid-stream", async () => {
    const ns = await createNamespace(client, "inf-reset");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "c", { n: "0" }));
    const { host, port } = apiServerAddress(env.kubeConfig);
    const proxy = await startTcpProxy(host, port);
    const recorder = newRecorder();
    const informer = createInformer<ConfigMap>({
      kubeConfig: viaPort(env.kubeConfig, proxy.port),
      path,
      logger,
      backoff: { baseMs: 50, maxMs: 500, factor: 2, jitter: 0.5 },
      onWatchRestart: (reason) => recorder.restarts.push(reason),
    });
    record(informer, recorder);
    await informer.start();
    try {
      let drops = 0;
      for (const n of range(1, 40)) {
        await bump(ns, "c", n);
        if (n % 8 === 0) drops += proxy.dropAll();
        await new Promise((r) => setTimeout(r, 30));
      }
      await expect
        .poll(() => recorder.counters.get("c")?.at(-1) === 40, { message: "the last update" })
        .toBe(true);
      expect(drops).toBeGreaterThanOrEqual(5);
      // A drop may also hit an idle pooled connection or fall into a backoff pause, so not every drop is a restart.
      expect(recorder.restarts.filter((r) => r === "error").length).toBeGreaterThanOrEqual(3);
      expect(recorder.counters.get("c")).toEqual(range(0, 40));
    } finally {
      informer.stop();
      await proxy.close();
    }
  });

  it("restarts a watch that silently stops carrying bytes, and delivers what happened meanwhile", async () => {
    const ns = await createNamespace(client, "inf-stall");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "c", { n: "0" }));
    await client.create(path, configMap(ns, "doomed", {}));
    const { host, port } = apiServerAddress(env.kubeConfig);
    const proxy = await startTcpProxy(host, port);
    const recorder = newRecorder();
    const informer = createInformer<ConfigMap>({
      kubeConfig: viaPort(env.kubeConfig, proxy.port),
      path,
      logger,
      stallTimeoutMs: 2_000,
      backoff: { baseMs: 50, maxMs: 500, factor: 2, jitter: 0.5 },
      onWatchRestart: (reason) => recorder.restarts.push(reason),
    });
    record(informer, recorder);
    await informer.start();
    try {
      await bump(ns, "c", 1);
      await expect
        .poll(() => recorder.counters.get("c")?.at(-1) === 1, { message: "the first update" })
        .toBe(true);
      const stallsBefore = recorder.restarts.filter((r) => r === "stall").length;
      expect(proxy.freeze()).toBeGreaterThan(0);
      await bump(ns, "c", 2);
      await client.delete(`${path}/doomed`);
      await bump(ns, "c", 3);
      await expect
        .poll(() => recorder.counters.get("c")?.at(-1) === 3, {
          message: "the updates made while the watch was frozen",
        })
        .toBe(true);
      expect(recorder.events).toContain("delete doomed");
      expect(informer.get(ns, "doomed")).toBeUndefined();
      expect(recorder.restarts.filter((r) => r === "stall").length).toBeGreaterThan(stallsBefore);
      expect(recorder.counters.get("c")).toEqual([0, 1, 2, 3]);
    } finally {
      informer.stop();
      await proxy.close();
    }
  });

  it("resyncs by replaying its cache, without asking the API server, and keeps watching after", async () => {
    const ns = await createNamespace(client, "inf-resync");
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    await client.create(path, configMap(ns, "stays", { n: "0" }));
    await client.create(path, configMap(ns, "goes", { n: "0" }));
    const requests: string[] = [];
    const counted = createKubeClient(env.kubeConfig, {
      onRequest: (info) => requests.push(`${info.watch ? "WATCH" : info.method} ${info.path}`),
    });
    const replays: string[] = [];
    const informer = createInformer<ConfigMap>({
      kubeConfig: env.kubeConfig,
      client: counted,
      path,
      logger,
      resyncIntervalMs: 300,
    });
    informer.onUpdate((obj, old) => {
      if (obj === old) replays.push(obj.metadata.name);
    });
    await informer.start();
    try {
      // Several replays of both objects, each a delivery of the cached object to the update handlers.
      await expect
        .poll(() => replays.filter((n) => n === "stays").length, { timeout: 10_000 })
        .toBeGreaterThan(2);
      expect(replays.filter((n) => n === "goes").length).toBeGreaterThan(1);
      // One list and one watch: the replays asked the API server nothing.
      expect(requests.filter((r) => r.startsWith("GET "))).toHaveLength(1);
      await client.delete(`${path}/goes`);
      await expect.poll(() => informer.list(ns).map((o) => o.metadata.name)).toEqual(["stays"]);
      // Replays after the delete carry only what is in the cache.
      const after = replays.length;
      await expect.poll(() => replays.length, { timeout: 10_000 }).toBeGreaterThan(after);
      expect(replays.slice(after).every((n) => n === "stays")).toBe(true);
    } finally {
      informer.stop();
      await counted.close();
    }
  });
});
