import { createServer, type Socket } from "node:net";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKubeClient, type KubeClient, verbsOver } from "../../src/kube/client.ts";
import { createEventRecorder, DROPPED_METRIC, type EventRecorder } from "../../src/kube/events.ts";
import { fenceClient } from "../../src/kube/fence.ts";
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
    ...verbsOver((method, path, options) => track(() => real.request(method, path, options))),
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

  it("one reason's flood leaves another reason its budget: on a blueprint every namespace shares, and on an identity", async () => {
    const ns = await createNamespace(admin, "events-reasons");
    const registry = new Registry();
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client: admin,
      component: "agentid-manager",
      logger: testLogger("reasons"),
      registry,
      now: () => Date.UTC(2026, 11, 6, 12, 0, 0),
    });
    // A blueprint named after the namespace, so that its Events in "default" are this test's alone.
    const blueprint = {
      apiVersion: "agentid.io/v1alpha1",
      kind: "AgentIdentityBlueprint",
      metadata: { name: ns, uid: `uid-bp-${ns}` },
    };
    for (let i = 0; i < 30; i++) {
      recorder.record(
        blueprint,
        "Normal",
        "OrphanedCredentialRemoved",
        `Removed federated credential c-${i}`,
      );
      await recorder.flush();
    }
    recorder.record(
      blueprint,
      "Warning",
      "OrphanedCredentialNotRemoved",
      "Cannot remove c-team yet: HTTP 503",
    );
    const agent = identity(ns, "agent");
    for (let i = 0; i < 30; i++) {
      recorder.record(agent, "Warning", "PodRefused", `pod asks for hostPort ${8000 + i}`);
      await recorder.flush();
    }
    recorder.record(
      agent,
      "Warning",
      "TokenRequestRefused",
      "a TokenRequest for another audience was refused",
    );
    await recorder.flush();
    expect(await dropped(registry, "rate_limited")).toBe(10);

    const onBlueprint = (await eventsIn("default")).filter((e) => e.involvedObject.name === ns);
    expect(onBlueprint.find((e) => e.reason === "OrphanedCredentialNotRemoved")).toMatchObject({
      message: "Cannot remove c-team yet: HTTP 503",
      count: 1,
    });
    const onIdentity = await eventsIn(ns);
    expect(onIdentity.find((e) => e.reason === "TokenRequestRefused")).toMatchObject({
      message: "a TokenRequest for another audience was refused",
      count: 1,
    });
    expect(onIdentity.filter((e) => e.reason === "PodRefused").reduce((sum, e) => sum + e.count, 0)).toBe(25);
  });

  it("at the end of a term, what waits is dropped with one log line, not written through the fenced client one warning each", async () => {
    const ns = await createNamespace(admin, "events-term");
    const real = createKubeClient(cp.kubeConfig);
    const term = new AbortController();
    const { client, stats } = countingClient(fenceClient(real, () => term.signal));
    const registry = new Registry();
    const lines: Array<{ msg: string; dropped?: number; abandoned?: number }> = [];
    const sink = createEventSink(
      cp.kubeConfig,
      client,
      createLogger({
        name: "t",
        level: "warn",
        destination: { write: (l: string) => void lines.push(JSON.parse(l)) },
      }),
      "pod-1",
      registry,
    );
    sink.open(term.signal);
    try {
      for (let i = 0; i < 100; i++) {
        void sink.emit({
          namespace: ns,
          name: `agent-${i}`,
          type: "Normal",
          reason: "Ready",
          message: "ready",
        });
      }
      expect(stats.writes).toBe(4);
      // The elector ends the term; the manager then stops the operator, which closes the sink.
      term.abort();
      // What the draining workers still report is dropped as well.
      void sink.emit({ namespace: ns, name: "late", type: "Warning", reason: "Failed", message: "late" });
      await sink.close();
      expect(lines.filter((l) => l.msg === "could not write event")).toEqual([]);
      const closed = lines.filter((l) => l.msg === "event recorder closed: events not written");
      expect(closed).toHaveLength(1);
      expect(closed[0]).toMatchObject({ dropped: 96 });
      expect(stats.writes).toBe(4);
      // The four in flight were aborted by the fence (one may have been answered first); nothing else left.
      expect((await eventsIn(ns)).length).toBeLessThanOrEqual(4);
      const abandoned = closed[0]?.abandoned ?? -1;
      expect(abandoned).toBeGreaterThanOrEqual(0);
      expect(abandoned).toBeLessThanOrEqual(4);
      // 96 waiting, the one reported after the term, and the aborted writes.
      expect(await dropped(registry, "shutdown")).toBe(97 + abandoned);
    } finally {
      await real.close();
    }
  });

  it("close() on a silent API server aborts the writes in flight after closeWaitMs instead of waiting for the request timeout", async () => {
    // A loopback server that accepts connections and never answers: the API server that stopped answering.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    const client = createKubeClient(viaPort(cp.kubeConfig, port));
    const registry = new Registry();
    const lines: Array<{ msg: string; abandoned?: number }> = [];
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client,
      component: "agentid-webhook",
      logger: createLogger({
        name: "t",
        level: "warn",
        destination: { write: (l: string) => void lines.push(JSON.parse(l)) },
      }),
      registry,
      closeWaitMs: 200,
    });
    try {
      for (let i = 0; i < 6; i++)
        recorder.record(identity("team", `a${i}`), "Warning", "PodRefused", "refused");
      // The four writes in flight have reached the silent server.
      await expect.poll(() => sockets.size).toBeGreaterThanOrEqual(1);
      await recorder.close();
      expect(await dropped(registry, "shutdown")).toBe(6);
      expect(lines.filter((l) => l.msg === "could not write event")).toEqual([]);
      expect(lines.filter((l) => l.msg === "event recorder closed: events not written")).toEqual([
        expect.objectContaining({ dropped: 2, abandoned: 4 }),
      ]);
    } finally {
      await client.close({ forceAfterMs: 0 });
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
