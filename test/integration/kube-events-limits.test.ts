import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { createEventRecorder, DROPPED_METRIC, type EventRecorder } from "../../src/kube/events.ts";
import { createLogger } from "../../src/lib/log.ts";
import { createEventSink } from "../../src/operator/events.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { createNamespace, testLogger, viaPort } from "./kube-support.ts";

/**
 * The recorder's limits against kube-apiserver: writes in flight (the operator's burst), the bounded queue,
 * the per-object budget over an injected clock. The client is the real one, wrapped only to count the
 * requests it has open at once.
 */

const cp = connectControlPlane();
let admin: KubeClient;

beforeAll(() => {
  admin = createKubeClient(cp.kubeConfig);
});
afterAll(async () => {
  await admin.close();
});

interface CoreEvent {
  metadata: { name: string };
  involvedObject: { kind: string; name: string };
  reason: string;
  message: string;
  count: number;
}

/** The real client; its Event writes are counted while open, and the most open at once is kept. */
function countingClient(real: KubeClient) {
  let open = 0;
  const stats = { maxOpen: 0, writes: 0 };
  const track = async <T>(write: () => Promise<T>): Promise<T> => {
    open++;
    stats.writes++;
    stats.maxOpen = Math.max(stats.maxOpen, open);
    try {
      return await write();
    } finally {
      open--;
    }
  };
  const client: KubeClient = {
    ...real,
    create: (path, body, query) => track(() => real.create(path, body, query)),
    patch: (path, type, patch, query) => track(() => real.patch(path, type, patch, query)),
  };
  return { client, stats };
}

async function eventsIn(ns: string): Promise<CoreEvent[]> {
  return (await admin.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${ns}/events`)).items;
}

async function dropped(registry: Registry, reason: string): Promise<number> {
  const metric = registry.getSingleMetric(DROPPED_METRIC);
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => v.labels.reason === reason).reduce((sum, v) => sum + v.value, 0);
}

const identity = (ns: string, name: string) => ({
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentity",
  metadata: { name, namespace: ns, uid: `uid-${name}` },
});

describe("event recorder limits", () => {
  it("the operator's burst of events for 300 identities never has more than 4 writes open, and all land", async () => {
    const ns = await createNamespace(admin, "events-burst");
    const real = createKubeClient(cp.kubeConfig);
    const { client, stats } = countingClient(real);
    const registry = new Registry();
    const sink = createEventSink(cp.kubeConfig, client, testLogger("burst"), "pod-1", registry);
    try {
      // As 300 reconciles finishing at once would: fired without waiting, each a Normal transition.
      for (let i = 0; i < 300; i++) {
        void sink.emit({
          namespace: ns,
          name: `agent-${i}`,
          uid: `uid-${i}`,
          type: "Normal",
          reason: "Ready",
          message: "the agent identity is ready",
        });
      }
      await sink.flush();
      expect(stats.maxOpen).toBe(4);
      expect(stats.writes).toBe(300);
      const events = await eventsIn(ns);
      expect(events).toHaveLength(300);
      expect(new Set(events.map((e) => e.involvedObject.name)).size).toBe(300);
      expect(await dropped(registry, "queue_full")).toBe(0);
    } finally {
      await real.close();
    }
  });

  it("drops and counts what does not fit behind the writes in flight, and flush still resolves", async () => {
    const ns = await createNamespace(admin, "events-full");
    const real = createKubeClient(cp.kubeConfig);
    const { client, stats } = countingClient(real);
    const registry = new Registry();
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client,
      component: "agentid-manager",
      logger: testLogger("full"),
      registry,
      limits: { maxQueued: 10 },
    });
    try {
      // record() is synchronous: 4 writes start at once, 10 wait, the other 36 do not fit.
      for (let i = 0; i < 50; i++) recorder.record(identity(ns, `a${i}`), "Normal", "Ready", "ready");
      // A repeat of a waiting event joins it instead of taking a place in the queue.
      recorder.record(identity(ns, "a13"), "Normal", "Ready", "ready");
      await recorder.flush();
      expect(stats.maxOpen).toBe(4);
      expect(await dropped(registry, "queue_full")).toBe(36);
      const events = await eventsIn(ns);
      expect(events.map((e) => e.involvedObject.name).sort()).toEqual(
        Array.from({ length: 14 }, (_, i) => `a${i}`).sort(),
      );
      expect(events.find((e) => e.involvedObject.name === "a13")?.count).toBe(2);
      expect(stats.writes).toBe(14);
      // The recorder takes events again once the queue has drained.
      recorder.record(identity(ns, "late"), "Normal", "Ready", "ready");
      await recorder.flush();
      expect((await eventsIn(ns)).some((e) => e.involvedObject.name === "late")).toBe(true);
    } finally {
      await real.close();
    }
  });

  it("gives an object 25 writes, then one every 5 minutes, and the next write carries the full count", async () => {
    const ns = await createNamespace(admin, "events-spam");
    const real = createKubeClient(cp.kubeConfig);
    const { client, stats } = countingClient(real);
    const registry = new Registry();
    let clock = Date.UTC(2026, 11, 6, 12, 0, 0);
    const recorder: EventRecorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client,
      component: "agentid-manager",
      logger: testLogger("spam"),
      registry,
      now: () => clock,
    });
    const subject = identity(ns, "flaky");
    const fail = () =>
      recorder.record(subject, "Warning", "FederationNotVerified", "the credential is missing");
    try {
      for (let i = 0; i < 30; i++) {
        fail();
        // Awaited one by one, so that each repeat is its own write (not joined to a waiting one).
        await recorder.flush();
      }
      expect(stats.writes).toBe(25);
      expect(await dropped(registry, "rate_limited")).toBe(5);
      let [event] = await eventsIn(ns);
      expect(event?.count).toBe(25);
      clock += 5 * 60_000 - 1_000;
      fail();
      await recorder.flush();
      expect(stats.writes).toBe(25);
      clock += 1_000;
      fail();
      await recorder.flush();
      expect(stats.writes).toBe(26);
      [event] = await eventsIn(ns);
      expect(event).toMatchObject({ count: 32, message: "the credential is missing" });
      // Another object has a budget of its own.
      recorder.record(identity(ns, "other"), "Warning", "FederationNotVerified", "the credential is missing");
      await recorder.flush();
      expect(stats.writes).toBe(27);
    } finally {
      await real.close();
    }
  });

  it("never throws from record when the API server cannot be reached, and flush still resolves", async () => {
    // Port 1 on loopback: nothing listens, every write fails at once.
    const unreachable = createKubeClient(viaPort(cp.kubeConfig, 1));
    const lines: string[] = [];
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client: unreachable,
      component: "agentid-manager",
      logger: createLogger({
        name: "t",
        level: "warn",
        destination: { write: (l: string) => void lines.push(l) },
      }),
    });
    try {
      for (let i = 0; i < 20; i++) {
        expect(() =>
          recorder.record(identity("x", `a${i % 3}`), "Warning", "Failed", `attempt ${i}`),
        ).not.toThrow();
      }
      await recorder.flush();
      expect(lines.some((l) => l.includes("could not write event"))).toBe(true);
    } finally {
      await unreachable.close();
    }
  });

  it("combines similar events whose messages vary, from the 11th distinct message on", async () => {
    const ns = await createNamespace(admin, "events-similar");
    const registry = new Registry();
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client: admin,
      component: "agentid-manager",
      logger: testLogger("similar"),
      registry,
    });
    const subject = identity(ns, "varied");
    for (let i = 0; i < 20; i++) {
      recorder.record(subject, "Warning", "GraphFailed", `request ${i} failed with status 503`);
    }
    await recorder.flush();
    const events = await eventsIn(ns);
    expect(events).toHaveLength(11);
    const combined = events.filter((e) => e.message.startsWith("(combined from similar events): "));
    expect(combined).toHaveLength(1);
    expect(combined[0]).toMatchObject({
      count: 10,
      message: "(combined from similar events): request 19 failed with status 503",
    });
    expect(events.filter((e) => e.count === 1)).toHaveLength(10);
    expect(await dropped(registry, "rate_limited")).toBe(0);
  });
});
