import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { createLogger } from "../../src/lib/log.ts";
import type { AdmissionRequest } from "../../src/webhook/admission.ts";
import { createGuard } from "../../src/webhook/guard-review.ts";
import { createResolve, MISSING_BLUEPRINT_TTL_MS } from "../../src/webhook/index.ts";
import { createApiReads } from "../../src/webhook/reads.ts";
import { createReviewer } from "../../src/webhook/review.ts";
import type { IdentitySource } from "../../src/webhook/select.ts";
import { resolveTarget } from "../../src/webhook/target.ts";
import { fixtureObjects, podCreateRequest, settings } from "./support.ts";

/**
 * Whole mutating reviews wired as src/webhook/index.ts wires them (caches in front, the real API reads
 * behind), against a real HTTP server on loopback standing in for a slow or busy API server: what it
 * holds, what it is asked and how often. The caches are arrays (the informers' get/list contract); the
 * clock of the read budget and of the missing-blueprint memory is faked.
 */

const { blueprint: BLUEPRINT, identity: READY, namespace: NAMESPACE } = fixtureObjects();
const NS = "research";
const NOT_READY: AgentIdentity = structuredClone(READY);
for (const c of NOT_READY.status?.conditions ?? [])
  if (c.type === "Ready")
    Object.assign(c, { status: "False", reason: "FederationNotVerified", message: "not yet" });

const IDENTITY_PATH = `/apis/agentid.io/v1alpha1/namespaces/${NS}/agentidentities`;
const BLUEPRINT_PATH = "/apis/agentid.io/v1alpha1/agentidentityblueprints";

/** What the API server answers per path: an object at once, or `hold` (until the test answers). */
const routes = new Map<string, unknown>();
const HOLD = Symbol("hold");
const held = new Map<string, ServerResponse[]>();
const arrived: string[] = [];
let server: Server;
let kube: KubeClient;

function send(res: ServerResponse, body: unknown) {
  if (body === undefined) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 404, reason: "NotFound" }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function handle(req: IncomingMessage, res: ServerResponse) {
  const url = req.url ?? "";
  arrived.push(url);
  const body = routes.get(url);
  if (body === HOLD) held.set(url, [...(held.get(url) ?? []), res]);
  else send(res, body);
}

/** Answers every request held on `path` with `body`. */
function answer(path: string, body: unknown) {
  for (const res of held.get(path) ?? []) send(res, body);
  held.delete(path);
}

beforeAll(async () => {
  server = createServer(handle);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  kube = createKubeClient({
    getCurrentCluster: () => ({ server: url }),
    applyToHTTPSOptions: async () => {},
  });
});

beforeEach(() => {
  routes.clear();
  arrived.length = 0;
});

afterEach(() => {
  vi.useRealTimers();
  for (const list of held.values()) for (const res of list) res.destroy();
  held.clear();
});

afterAll(async () => {
  await kube.close({ forceAfterMs: 1000 });
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** The reviewer (or the guard) over caches holding `cache` and the loopback API server, as index.ts wires it. */
function webhook(cache: { identities: AgentIdentity[]; blueprints: AgentIdentityBlueprint[] }) {
  return wire(cache).review;
}

function wire(cache: { identities: AgentIdentity[]; blueprints: AgentIdentityBlueprint[] }) {
  const api = createApiReads(kube);
  const source: IdentitySource = {
    cached: (ns, name) =>
      cache.identities.find((i) => i.metadata.namespace === ns && i.metadata.name === name),
    cachedList: (ns) => cache.identities.filter((i) => i.metadata.namespace === ns),
    read: api.identity,
    list: api.identities,
  };
  const resolve = createResolve({
    blueprints: { get: (_ns, name) => cache.blueprints.find((b) => b.metadata.name === name) },
    namespaces: { get: (_ns, name) => (name === NS ? NAMESPACE : undefined) },
    api,
    target: (input) => resolveTarget({ ...input, allowedAuthorityHosts: [] }),
  });
  const logger = createLogger({ name: "review-budget", level: "silent" });
  return {
    review: createReviewer({ identities: source, resolve, settings: () => settings(), logger }),
    guard: createGuard({
      identities: source,
      resolve,
      settings: () => settings(),
      trustedUsers: () => [],
      readPod: api.pod,
      logger,
    }),
  };
}

function request(pod: { identity?: string; serviceAccountName: string }): AdmissionRequest {
  return podCreateRequest({ namespace: NS, uid: "u", user: "alice", ...pod });
}

/** Event-loop turns (setImmediate is not faked) until `done`: loopback answers arrive through real I/O. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !done(); i++) await new Promise((r) => setImmediate(r));
  expect(done()).toBe(true);
}

const named = { identity: "research-agent", serviceAccountName: "research-agent" };

describe("one read budget per review", () => {
  it("a refusal that chains reads (a slow blueprint, then the re-check) answers ApiServerTimeout at 4 s in all", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    routes.set(`${BLUEPRINT_PATH}/contoso-research`, HOLD);
    routes.set(`${IDENTITY_PATH}/research-agent`, HOLD);
    // The cache holds the identity not Ready (a moment behind) and no blueprint yet.
    const review = webhook({ identities: [NOT_READY], blueprints: [] });
    let result: Awaited<ReturnType<typeof review>> | undefined;
    void review(request(named)).then((r) => {
      result = r;
    });
    await until(() => arrived.length === 1);
    await vi.advanceTimersByTimeAsync(3000);
    answer(`${BLUEPRINT_PATH}/contoso-research`, BLUEPRINT);
    // The blueprint came after 3 s; the identity is not Ready in the cache: the re-check reads it.
    await until(() => arrived.length === 2);
    expect(arrived[1]).toBe(`${IDENTITY_PATH}/research-agent`);
    await vi.advanceTimersByTimeAsync(999);
    expect(result).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await until(() => result !== undefined);
    expect(result?.reason).toBe("ApiServerTimeout");
    expect(result?.response.status?.message).toBe(
      "agentid: could not read AgentIdentity research-agent in namespace research from the API server within 4 s; try again",
    );
  });

  it("reads the blueprint once, though the re-check resolves the identity again", async () => {
    routes.set(`${BLUEPRINT_PATH}/contoso-research`, BLUEPRINT);
    routes.set(`${IDENTITY_PATH}/research-agent`, READY);
    const review = webhook({ identities: [NOT_READY], blueprints: [] });
    const { outcome } = await review(request(named));
    expect(outcome).toBe("injected");
    expect(arrived).toEqual([`${BLUEPRINT_PATH}/contoso-research`, `${IDENTITY_PATH}/research-agent`]);
  });
});

describe("the guard's reads share one budget too", () => {
  it("a pod projecting the exchange token on cold caches: the LIST once, then the blueprint within what is left", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    routes.set(IDENTITY_PATH, HOLD);
    routes.set(`${BLUEPRINT_PATH}/contoso-research`, HOLD);
    const { guard } = wire({ identities: [], blueprints: [] });
    const pod = {
      metadata: { generateName: "copy-" },
      spec: {
        serviceAccountName: "research-agent",
        containers: [{ name: "app", image: "a:1" }],
        volumes: [
          {
            name: "t",
            projected: {
              sources: [{ serviceAccountToken: { audience: "api://AzureADTokenExchange", path: "t" } }],
            },
          },
        ],
      },
    };
    let result: Awaited<ReturnType<typeof guard>> | undefined;
    void guard({
      uid: "g",
      kind: "pod",
      operation: "CREATE",
      namespace: NS,
      name: "",
      object: pod,
      oldObject: undefined,
      user: "mallory",
      groups: [],
      dryRun: false,
    }).then((r) => {
      result = r;
    });
    await until(() => arrived.length === 1);
    await vi.advanceTimersByTimeAsync(2500);
    answer(IDENTITY_PATH, { items: [READY] });
    // The binding lookup listed the namespace; the selection needs the same list: not asked again.
    await until(() => arrived.length === 2);
    expect(arrived).toEqual([IDENTITY_PATH, `${BLUEPRINT_PATH}/contoso-research`]);
    await vi.advanceTimersByTimeAsync(1499);
    expect(result).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await until(() => result !== undefined);
    expect(result?.reason).toBe("ApiServerTimeout");
    expect(result?.response.status?.message).toBe(
      "agentid: could not read AgentIdentityBlueprint contoso-research from the API server within 4 s; try again",
    );
  });
});

describe("API load per refused pod", () => {
  it("the re-check of a pod that names its identity is one GET of it, not a LIST of the namespace", async () => {
    routes.set(`${IDENTITY_PATH}/research-agent`, READY);
    const review = webhook({ identities: [READY], blueprints: [BLUEPRINT] });
    // The cache says the pod runs as the wrong ServiceAccount; the API server says the same.
    const { reason } = await review(request({ identity: "research-agent", serviceAccountName: "default" }));
    expect(reason).toBe("ServiceAccountMismatch");
    expect(arrived).toEqual([`${IDENTITY_PATH}/research-agent`]);
  });

  it("concurrent reviews that miss the cache in one namespace share one LIST", async () => {
    routes.set(IDENTITY_PATH, HOLD);
    const review = webhook({ identities: [], blueprints: [BLUEPRINT] });
    const all = Promise.all(
      Array.from({ length: 5 }, () => review(request({ serviceAccountName: "research-agent" }))),
    );
    await until(() => arrived.length === 1);
    // Give the other four every chance to send their own.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    answer(IDENTITY_PATH, { items: [READY] });
    const results = await all;
    expect(results.map((r) => r.outcome)).toEqual([
      "injected",
      "injected",
      "injected",
      "injected",
      "injected",
    ]);
    expect(arrived).toEqual([IDENTITY_PATH]);
  });

  it("a blueprint that does not exist is read once per few seconds, not once per pod", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const orphan = structuredClone(READY);
    orphan.spec.blueprintRef.name = "not-there";
    const review = webhook({ identities: [orphan], blueprints: [] });
    for (let i = 0; i < 3; i++) {
      const { reason } = await review(request(named));
      expect(reason).toBe("BlueprintNotFound");
    }
    expect(arrived).toEqual([`${BLUEPRINT_PATH}/not-there`]);
    vi.advanceTimersByTime(MISSING_BLUEPRINT_TTL_MS + 1);
    await review(request(named));
    expect(arrived).toEqual([`${BLUEPRINT_PATH}/not-there`, `${BLUEPRINT_PATH}/not-there`]);
  });
});
