import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { KubeMethod, RequestOptions } from "../../src/kube/client.ts";
import {
  createEventRecorder,
  DROPPED_METRIC,
  type EventRecorder,
  type EventRecorderOptions,
} from "../../src/kube/events.ts";
import { createLogger } from "../../src/lib/log.ts";
import { createEventSink } from "../../src/operator/events.ts";
import { createRefusalRecorder, REFUSAL_NAMESPACE_LIMIT } from "../../src/webhook/events.ts";
import { kubeClientOver } from "../support/kube-stub.ts";

/**
 * The recorder as a whole, over an injected clock and an injected client that stands in for the API
 * server's transport (it answers every Event write and counts them); the decisions themselves are the
 * recorder's own. The same limits against kube-apiserver are in test/integration/kube-events-limits.test.ts.
 */

interface Sent {
  method: KubeMethod;
  path: string;
  body: {
    reason?: string;
    message?: string;
    count?: number;
    type?: string;
    involvedObject?: { name: string };
  };
}

/** Answers every request at once, or, with `hang`, never (until the request's signal aborts). */
function apiServer() {
  const sent: Sent[] = [];
  const state = { hang: false, aborted: 0 };
  const request = async <T>(method: KubeMethod, path: string, opts: RequestOptions = {}): Promise<T> => {
    sent.push({ method, path, body: opts.body as Sent["body"] });
    if (state.hang) {
      return new Promise<T>((_, reject) => {
        const abort = () => {
          state.aborted++;
          reject(new Error("This operation was aborted"));
        };
        if (opts.signal?.aborted) abort();
        else opts.signal?.addEventListener("abort", abort, { once: true });
      });
    }
    return opts.body as T;
  };
  const client = kubeClientOver(request);
  return { client, sent, state };
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    name: "t",
    level: "debug",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

async function dropped(registry: Registry, reason: string): Promise<number> {
  const values = (await registry.getSingleMetric(DROPPED_METRIC)?.get())?.values ?? [];
  return values.filter((v) => v.labels.reason === reason).reduce((sum, v) => sum + v.value, 0);
}

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);
const identity = (namespace: string, name: string) => ({
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentity",
  metadata: { name, namespace, uid: `uid-${namespace}-${name}` },
});
const blueprint = {
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentityBlueprint",
  metadata: { name: "research", uid: "uid-bp" },
};

function recorder(extra: Partial<EventRecorderOptions> = {}) {
  const api = apiServer();
  const registry = new Registry();
  const log = capture();
  const clock = { now: T0 };
  const events: EventRecorder = createEventRecorder({
    kubeConfig: { getCurrentCluster: () => null } as unknown as EventRecorderOptions["kubeConfig"],
    client: api.client,
    component: "agentid-manager",
    logger: log.logger,
    registry,
    now: () => clock.now,
    ...extra,
  });
  return { events, api, registry, log, clock };
}

const reasonsSent = (sent: Sent[]) => sent.map((s) => s.body.reason);

afterEach(() => {
  vi.useRealTimers();
});

describe("event recorder: one reason's flood leaves the other reasons their budget", () => {
  it("a Warning OrphanedCredentialNotRemoved on a blueprint is written after 30 Normal OrphanedCredentialRemoved from other namespaces", async () => {
    const { events, api, registry } = recorder();
    // A namespace user's rounds: each deleted identity leaves an orphan the sweep removes and reports.
    for (let i = 0; i < 30; i++) {
      events.record(
        blueprint,
        "Normal",
        "OrphanedCredentialRemoved",
        `Removed federated credential c-${i} from application app: it trusted system:serviceaccount:mallory:sa-${i}`,
      );
      await events.flush();
    }
    expect(api.sent).toHaveLength(25);
    expect(await dropped(registry, "rate_limited")).toBe(5);
    // Another namespace's credential cannot be removed: that Warning still reaches the API server.
    events.record(
      blueprint,
      "Warning",
      "OrphanedCredentialNotRemoved",
      "Cannot remove orphaned federated credential c-team (system:serviceaccount:team:agent) yet: Graph 503",
    );
    await events.flush();
    expect(api.sent).toHaveLength(26);
    expect(api.sent.at(-1)).toMatchObject({
      method: "POST",
      path: "/api/v1/namespaces/default/events",
      body: { type: "Warning", reason: "OrphanedCredentialNotRemoved" },
    });
    expect(api.sent.at(-1)?.body.message).toContain("c-team");
    expect(await dropped(registry, "rate_limited")).toBe(5);
  });

  it("a TokenRequestRefused is written, with its own message, after 30 PodRefused with varying messages on the identity", async () => {
    const { events, api, registry } = recorder({ component: "agentid-webhook" });
    const agent = identity("team", "agent");
    for (let i = 0; i < 30; i++) {
      events.record(agent, "Warning", "PodRefused", `pod asks for hostPort ${8000 + i}`);
      await events.flush();
    }
    expect(api.sent).toHaveLength(25);
    // The PodRefused flood was combined from the 11th message on.
    expect(api.sent.at(-1)?.body.message).toMatch(/^\(combined from similar events\): /);
    events.record(agent, "Warning", "TokenRequestRefused", "a TokenRequest for another audience was refused");
    await events.flush();
    expect(api.sent).toHaveLength(26);
    expect(api.sent.at(-1)?.body).toMatchObject({
      reason: "TokenRequestRefused",
      message: "a TokenRequest for another audience was refused",
      count: 1,
    });
    expect(await dropped(registry, "rate_limited")).toBe(5);
  });

  it("still limits each reason: the 26th write of one reason is dropped until a token comes back", async () => {
    const { events, api, clock } = recorder();
    const agent = identity("team", "agent");
    for (let i = 0; i < 26; i++) {
      events.record(agent, "Warning", "FederationNotVerified", "the credential is missing");
      await events.flush();
    }
    expect(reasonsSent(api.sent)).toHaveLength(25);
    clock.now += 5 * 60_000;
    events.record(agent, "Warning", "FederationNotVerified", "the credential is missing");
    await events.flush();
    expect(api.sent).toHaveLength(26);
    // The write after the refill carries every occurrence, the dropped one too.
    expect(api.sent.at(-1)).toMatchObject({ method: "PATCH", body: { count: 27 } });
  });
});

describe("the webhook's refusal recorder: per-namespace budget", () => {
  function refusals() {
    const api = apiServer();
    const registry = new Registry();
    const events = createRefusalRecorder({
      kubeConfig: { getCurrentCluster: () => null } as unknown as EventRecorderOptions["kubeConfig"],
      client: api.client,
      logger: capture().logger,
      registry,
      now: () => T0,
    });
    return { events, api, registry };
  }

  it("a namespace that uses up its budget leaves another namespace's Events alone", async () => {
    const { events, api, registry } = refusals();
    // Mallory spreads her refusals over enough identities of her own that no per-object budget binds.
    for (let i = 0; i < 80; i++) {
      events.record(identity("mallory", `loop-${i % 8}`), "Warning", "PodRefused", `hostPort ${9000 + i}`);
      await events.flush();
    }
    expect(api.sent).toHaveLength(REFUSAL_NAMESPACE_LIMIT.burst);
    expect(await dropped(registry, "rate_limited")).toBe(80 - REFUSAL_NAMESPACE_LIMIT.burst);
    events.record(identity("team", "agent"), "Warning", "PodRefused", "pod asks for hostPort 8080");
    await events.flush();
    expect(api.sent).toHaveLength(REFUSAL_NAMESPACE_LIMIT.burst + 1);
    expect(api.sent.at(-1)).toMatchObject({
      path: "/api/v1/namespaces/team/events",
      body: { involvedObject: { name: "agent" }, message: "pod asks for hostPort 8080" },
    });
    // Within Mallory's own namespace, another reason has a budget of its own as well.
    events.record(identity("mallory", "loop-0"), "Warning", "TokenRequestRefused", "audience refused");
    await events.flush();
    expect(api.sent.at(-1)?.body.reason).toBe("TokenRequestRefused");
  });
});

describe("event recorder: close()", () => {
  it("drops what waits, counts it as shutdown, logs one line, and drops what is recorded afterwards", async () => {
    const { events, api, registry, log } = recorder({ limits: { maxInFlight: 1 } });
    for (let i = 0; i < 5; i++) events.record(identity("team", `a${i}`), "Normal", "Ready", "ready");
    // One write in flight (answered at once), four waiting behind it.
    expect(api.sent).toHaveLength(1);
    await events.close();
    expect(api.sent).toHaveLength(1);
    expect(await dropped(registry, "shutdown")).toBe(4);
    events.record(identity("team", "late"), "Warning", "Failed", "after close");
    await events.flush();
    expect(api.sent).toHaveLength(1);
    expect(await dropped(registry, "shutdown")).toBe(5);
    const closedLines = log.lines.filter((l) => l.msg === "event recorder closed: events not written");
    expect(closedLines).toHaveLength(1);
    expect(closedLines[0]).toMatchObject({ level: 40, dropped: 4, abandoned: 0 });
    expect(log.lines.some((l) => l.msg === "could not write event")).toBe(false);
    // Closing twice is the same close.
    await events.close();
    expect(log.lines.filter((l) => l.msg === "event recorder closed: events not written")).toHaveLength(1);
  });

  it("gives writes in flight closeWaitMs on a silent API server, then aborts them without a line each", async () => {
    vi.useFakeTimers();
    const { events, api, registry, log } = recorder({ closeWaitMs: 1_000 });
    api.state.hang = true;
    for (let i = 0; i < 10; i++)
      events.record(identity("team", `a${i}`), "Warning", "Failed", `attempt ${i}`);
    expect(api.sent).toHaveLength(4);
    let closed = false;
    const closing = events.close().then(() => {
      closed = true;
    });
    await vi.advanceTimersByTimeAsync(999);
    expect(closed).toBe(false);
    expect(api.state.aborted).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(api.state.aborted).toBe(4);
    expect(api.sent).toHaveLength(4);
    expect(await dropped(registry, "shutdown")).toBe(10);
    expect(log.lines.filter((l) => l.msg === "could not write event")).toHaveLength(0);
    const closedLines = log.lines.filter((l) => l.msg === "event recorder closed: events not written");
    expect(closedLines).toEqual([expect.objectContaining({ dropped: 6, abandoned: 4, inFlight: 4 })]);
  });

  it("ends as soon as the writes in flight do, without waiting closeWaitMs", async () => {
    vi.useFakeTimers();
    const { events, api, log } = recorder({ closeWaitMs: 60_000 });
    for (let i = 0; i < 3; i++) events.record(identity("team", `a${i}`), "Normal", "Ready", "ready");
    expect(api.sent).toHaveLength(3);
    // No timer needs to fire: the writes are answered and close() follows them.
    await events.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(log.lines.some((l) => l.msg === "event recorder closed: events not written")).toBe(false);
  });
});

describe("the operator's event sink across leadership terms", () => {
  it("drops what waits when a term ends, writes nothing until the next term, and writes again in it", async () => {
    const api = apiServer();
    const registry = new Registry();
    const log = capture();
    const sink = createEventSink(
      { getCurrentCluster: () => null } as unknown as EventRecorderOptions["kubeConfig"],
      api.client,
      log.logger,
      "pod-1",
      registry,
    );
    const first = new AbortController();
    sink.open(first.signal);
    const ready = (name: string) =>
      sink.emit({ namespace: "team", name, type: "Normal", reason: "Ready", message: "ready" });
    // Reported without waiting, as reconciles finishing at once do: 4 writes start, 6 wait.
    for (let i = 0; i < 10; i++) void ready(`a${i}`);
    expect(api.sent).toHaveLength(4);
    first.abort();
    // A worker still draining reports something: dropped, not sent.
    await ready("late");
    await sink.close();
    expect(api.sent).toHaveLength(4);
    expect(await dropped(registry, "shutdown")).toBe(7);
    expect(log.lines.filter((l) => l.msg === "event recorder closed: events not written")).toHaveLength(1);
    // Between terms nothing is sent either.
    await ready("between");
    expect(api.sent).toHaveLength(4);
    expect(await dropped(registry, "shutdown")).toBe(8);

    sink.open(new AbortController().signal);
    await ready("next-term");
    await sink.flush();
    expect(api.sent).toHaveLength(5);
    expect(api.sent.at(-1)?.body.involvedObject?.name).toBe("next-term");
  });
});
