import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import type { KubeConfigLike } from "../../src/kube/kubeconfig.ts";
import {
  createApiReads,
  isApiReadTimeout,
  REVIEW_READ_BUDGET_MS,
  ReadBudget,
} from "../../src/webhook/reads.ts";

/**
 * The webhook's API reads against a real HTTP server on loopback that answers some paths at once and
 * holds others until the test answers them (an API server in trouble). The budget runs on a fake clock;
 * the requests, the server and the kube client are real.
 */

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWJob29rIn0.c2lnbmF0dXJl";
let server: Server;
let kube: KubeClient;
/** Requests the server holds, by path, until `release` answers them (or the test ends). */
const held: Array<{ url: string; res: ServerResponse }> = [];
const arrived: string[] = [];
let onArrival: (() => void) | undefined;

function handle(req: IncomingMessage, res: ServerResponse) {
  arrived.push(req.url ?? "");
  onArrival?.();
  if (req.url?.includes("slow")) {
    held.push({ url: req.url, res });
    return;
  }
  if (req.url?.includes("missing")) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 404, reason: "NotFound", message: "not found" }));
    return;
  }
  if (req.url?.includes("broken")) {
    res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 500, reason: "InternalError", message: "etcd down" }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ metadata: { name: "fast", namespace: "research" }, items: [] }));
}

/** Answers the held requests (all of them) with an object named `name`. */
function release(name = "slow") {
  for (const { res } of held.splice(0)) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ metadata: { name, namespace: "research" }, items: [{ metadata: { name } }] }));
  }
}

beforeAll(async () => {
  server = createServer(handle);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A kubeconfig that sends a bearer token, as the manager's does.
  const kubeConfig: KubeConfigLike = {
    getCurrentCluster: () => ({ server: url }),
    applyToHTTPSOptions: async (opts) => {
      opts.headers = { Authorization: `Bearer ${TOKEN}` };
    },
  };
  kube = createKubeClient(kubeConfig);
});

afterEach(() => {
  vi.useRealTimers();
  for (const { res } of held.splice(0)) res.destroy();
});

afterAll(async () => {
  await kube.close({ forceAfterMs: 1000 });
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** Resolves once the server has received `count` requests in all. */
function arrivals(count: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (arrived.length >= count) {
        onArrival = undefined;
        resolve();
      }
    };
    onArrival = check;
    check();
  });
}

/** What a read came to: its value, or the message it failed with; `pending` while it has not settled. */
function track<T>(p: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: Error } = { settled: false };
  p.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: Error) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

/**
 * Waits (event-loop turns, not time: setImmediate is not faked) until `done` holds: the loopback answer
 * arrives through real I/O. vi.waitFor would advance the fake clock itself.
 */
async function until(done: () => boolean | undefined): Promise<void> {
  for (let i = 0; i < 10_000 && !done(); i++) await new Promise((r) => setImmediate(r));
  expect(done()).toBe(true);
}

const FAKE: Parameters<typeof vi.useFakeTimers>[0] = { toFake: ["setTimeout", "clearTimeout", "Date"] };

describe("createApiReads", () => {
  it("gives a review 4 s for all its reads, less than the webhook's timeoutSeconds of 5", () => {
    expect(REVIEW_READ_BUDGET_MS).toBe(4000);
  });

  it("answers what the API server answers in time; a 404 is undefined", async () => {
    const reads = createApiReads(kube);
    expect((await reads.identity("research", "fast", new ReadBudget()))?.metadata.name).toBe("fast");
    expect(await reads.identity("research", "missing", new ReadBudget())).toBeUndefined();
    expect(await reads.identities("missing", new ReadBudget())).toEqual([]);
  });

  it("a budget sets no timer until a read starts", () => {
    vi.useFakeTimers(FAKE);
    new ReadBudget();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("one deadline for all the reads of a review: a read after a 3 s one gets the 1 s left", async () => {
    const reads = createApiReads(kube);
    vi.useFakeTimers(FAKE);
    const budget = new ReadBudget();
    const before = arrived.length;
    const first = track(reads.blueprint("slow-blueprint", budget));
    await arrivals(before + 1);
    await vi.advanceTimersByTimeAsync(3000);
    release("slow-blueprint");
    await until(() => first.settled);
    expect(first.value?.metadata.name).toBe("slow-blueprint");
    const second = track(reads.identity("research", "slow-agent", budget));
    await arrivals(before + 2);
    await vi.advanceTimersByTimeAsync(999);
    expect(second.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => second.settled);
    expect(isApiReadTimeout(second.error)).toBe(true);
    expect(second.error?.message).toBe(
      "could not read AgentIdentity slow-agent in namespace research from the API server within 4 s; try again",
    );
    expect(second.error?.message).not.toContain(TOKEN);
    // Past its deadline a review reads nothing more: it fails at once, without a request.
    const third = reads.namespace("research-slow", budget);
    await expect(third).rejects.toThrow("could not read Namespace research-slow");
    expect(arrived.length).toBe(before + 2);
  });

  it("names each kind of read", async () => {
    const reads = createApiReads(kube);
    vi.useFakeTimers(FAKE);
    const budget = new ReadBudget(250);
    const before = arrived.length;
    const all = [
      reads.identities("slow", budget),
      reads.blueprint("slow", budget),
      reads.namespace("slow", budget),
      reads.pod("research", "slow", budget),
    ].map((p) =>
      p.then(
        () => "answered",
        (e: unknown) => (e as Error).message,
      ),
    );
    await arrivals(before + 4);
    await vi.advanceTimersByTimeAsync(250);
    expect(await Promise.all(all)).toEqual([
      "could not list the AgentIdentities of namespace slow from the API server within 0.25 s; try again",
      "could not read AgentIdentityBlueprint slow from the API server within 0.25 s; try again",
      "could not read Namespace slow from the API server within 0.25 s; try again",
      "could not read Pod slow in namespace research from the API server within 0.25 s; try again",
    ]);
  });

  it("concurrent reads of one path are one request; each review waits within its own budget", async () => {
    const reads = createApiReads(kube);
    vi.useFakeTimers(FAKE);
    const before = arrived.length;
    const early = new ReadBudget();
    const first = track(reads.identities("slow-ns", early));
    await arrivals(before + 1);
    await vi.advanceTimersByTimeAsync(1000);
    // Two more reviews list the same namespace while the first LIST is in flight: no new request.
    const late = new ReadBudget(1500);
    const second = track(reads.identities("slow-ns", late));
    const third = track(reads.identities("slow-ns", new ReadBudget()));
    await vi.advanceTimersByTimeAsync(1500);
    // The review with 1.5 s gives up at its own deadline; the request goes on for the others.
    await until(() => second.settled);
    expect(isApiReadTimeout(second.error)).toBe(true);
    expect(first.settled || third.settled).toBe(false);
    release("shared");
    await until(() => first.settled && third.settled);
    expect(first.value?.map((i) => i.metadata.name)).toEqual(["shared"]);
    expect(third.value?.map((i) => i.metadata.name)).toEqual(["shared"]);
    expect(arrived.slice(before)).toEqual(["/apis/agentid.io/v1alpha1/namespaces/slow-ns/agentidentities"]);
    // Once answered, the next review reads afresh.
    await reads.identities("research", new ReadBudget());
    expect(arrived.length).toBe(before + 2);
  });

  it("a review never reads the same object twice; another review does", async () => {
    const reads = createApiReads(kube);
    const budget = new ReadBudget();
    const before = arrived.length;
    await reads.blueprint("fast", budget);
    await reads.blueprint("fast", budget);
    expect(arrived.length).toBe(before + 1);
    await reads.blueprint("fast", new ReadBudget());
    expect(arrived.length).toBe(before + 2);
  });

  it("a name no object can have is not found, without a request (a forged review's)", async () => {
    const reads = createApiReads(kube);
    const before = arrived.length;
    const budget = new ReadBudget();
    const evil = `x\n${"a".repeat(5000)}`;
    expect(await reads.identity("research", evil, budget)).toBeUndefined();
    expect(await reads.identity(evil, "agent", budget)).toBeUndefined();
    expect(await reads.identities("Research", budget)).toEqual([]);
    expect(await reads.blueprint("a/b", budget)).toBeUndefined();
    expect(await reads.namespace("", budget)).toBeUndefined();
    expect(await reads.pod("research", "..", budget)).toBeUndefined();
    expect(arrived.length).toBe(before);
  });

  it("passes on an error of the API server as it is, not as a timeout", async () => {
    const reads = createApiReads(kube);
    const error = await reads.identity("research", "broken", new ReadBudget()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isApiReadTimeout(error)).toBe(false);
    expect((error as Error).message).toContain("etcd down");
  });
});
