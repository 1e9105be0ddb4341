import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import type { KubeConfigLike } from "../../src/kube/kubeconfig.ts";
import { API_READ_TIMEOUT_MS, createApiReads, isApiReadTimeout } from "../../src/webhook/reads.ts";

/**
 * The webhook's API reads against a real HTTP server on loopback that answers some paths at once and
 * holds others without an answer (an API server in trouble). The deadline runs on a fake clock; the
 * requests, the server and the kube client are real.
 */

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWJob29rIn0.c2lnbmF0dXJl";
let server: Server;
let kube: KubeClient;
/** Requests the server holds (never answered until the test ends). */
const held: ServerResponse[] = [];
const arrived: string[] = [];
let onArrival: (() => void) | undefined;

function handle(req: IncomingMessage, res: ServerResponse) {
  arrived.push(req.url ?? "");
  onArrival?.();
  if (req.url?.includes("/slow")) {
    held.push(res);
    return;
  }
  if (req.url?.includes("/missing")) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 404, reason: "NotFound", message: "not found" }));
    return;
  }
  if (req.url?.includes("/broken")) {
    res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 500, reason: "InternalError", message: "etcd down" }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ metadata: { name: "fast", namespace: "research" } }));
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
  for (const res of held.splice(0)) res.destroy();
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

describe("createApiReads", () => {
  it("waits 3 s, less than the webhook's timeoutSeconds of 5", () => {
    expect(API_READ_TIMEOUT_MS).toBe(3000);
  });

  it("answers what the API server answers in time; a 404 is undefined", async () => {
    const reads = createApiReads(kube);
    expect((await reads.identity("research", "fast"))?.metadata.name).toBe("fast");
    expect(await reads.identity("research", "missing")).toBeUndefined();
    expect(await reads.identities("missing")).toEqual([]);
  });

  it("gives up after the deadline with a message that names what it could not read, and nothing else", async () => {
    const reads = createApiReads(kube);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const before = arrived.length;
    let settled = false;
    const reading = reads.identity("research", "slow");
    const done = () => {
      settled = true;
    };
    reading.then(done, done);
    await arrivals(before + 1);
    expect(arrived.at(-1)).toBe("/apis/agentid.io/v1alpha1/namespaces/research/agentidentities/slow");
    await vi.advanceTimersByTimeAsync(API_READ_TIMEOUT_MS - 1);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const error = await reading.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isApiReadTimeout(error)).toBe(true);
    expect((error as Error).message).toBe(
      "could not read AgentIdentity slow in namespace research from the API server within 3 s; try again",
    );
    expect((error as Error).message).not.toContain(TOKEN);
  });

  it("names each kind of read, with the deadline it was given", async () => {
    const reads = createApiReads(kube, 250);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const before = arrived.length;
    const all = [
      reads.identities("slow"),
      reads.blueprint("slow"),
      reads.namespace("slow"),
      reads.pod("research", "slow"),
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

  it("passes on an error of the API server as it is, not as a timeout", async () => {
    const reads = createApiReads(kube);
    const error = await reads.identity("research", "broken").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isApiReadTimeout(error)).toBe(false);
    expect((error as Error).message).toContain("etcd down");
  });
});
