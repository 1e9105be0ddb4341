import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { createLogger } from "../../src/lib/log.ts";
import { type AdmissionRequest, encodeReview } from "../../src/webhook/admission.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { ApiReadTimeoutError, type NamespaceObject } from "../../src/webhook/reads.ts";
import type { Refusal } from "../../src/webhook/refusals.ts";
import { createReviewer, type Resolved } from "../../src/webhook/review.ts";
import type { IdentitySource } from "../../src/webhook/select.ts";
import { resolveTarget } from "../../src/webhook/target.ts";
import { fixtureObjects, podCreateRequest, settings } from "./support.ts";

/**
 * The review's refusal Events (one on the AgentIdentity a refusal concerns, none when there is none), the
 * one re-check of a refusal the cache decided against the API server, a timed-out API read, and the audit
 * annotation. The cache and the API server are two small in-memory stores behind the same IdentitySource
 * and resolve contract index.ts implements over the informers and the kube client, counting API reads.
 */

const { blueprint: BLUEPRINT, identity: READY, namespace: NAMESPACE } = fixtureObjects();
const NS = "research";

function identity(
  name: string,
  change: {
    serviceAccountName?: string;
    ready?: boolean;
    deleting?: boolean;
    created?: string;
    namespace?: string;
  } = {},
): AgentIdentity {
  const i = structuredClone(READY);
  i.metadata.name = name;
  i.metadata.namespace = change.namespace ?? NS;
  if (change.created) i.metadata.creationTimestamp = change.created;
  i.spec.serviceAccountName = change.serviceAccountName ?? name;
  if (change.deleting) i.metadata.deletionTimestamp = "2026-12-02T00:00:00Z";
  if (change.ready === false) {
    const ready = i.status?.conditions?.find((c) => c.type === "Ready");
    if (ready) Object.assign(ready, { status: "False", reason: "FederationNotVerified", message: "not yet" });
  }
  return i;
}

const namespace = (labels: Record<string, string>): NamespaceObject => ({
  ...NAMESPACE,
  metadata: { name: NS, labels },
});

/** What a cache or the API server holds. */
interface Holdings {
  identities: AgentIdentity[];
  namespace?: NamespaceObject;
}

interface RecordedEvent {
  identity: AgentIdentity;
  refusals: readonly Refusal[];
}

/**
 * A cluster whose cache may lag behind its API server. `reads` counts every API read (identity lists and
 * gets, namespace gets); `events` collects what the reviewer hands to recordRefusal.
 */
function world(cache: Holdings, api: Holdings = cache) {
  const reads = { identities: 0, namespace: 0 };
  const events: RecordedEvent[] = [];
  const inNs = (list: AgentIdentity[], ns: string) => list.filter((i) => i.metadata.namespace === ns);
  const source: IdentitySource = {
    cached: (ns, name) => inNs(cache.identities, ns).find((i) => i.metadata.name === name),
    cachedList: (ns) => inNs(cache.identities, ns),
    read: async (ns, name) => {
      reads.identities++;
      return inNs(api.identities, ns).find((i) => i.metadata.name === name);
    },
    list: async (ns) => {
      reads.identities++;
      return inNs(api.identities, ns);
    },
  };
  const target = (i: AgentIdentity, ns: string, n: NamespaceObject | undefined): Resolved =>
    resolveTarget({
      identity: i,
      blueprint: BLUEPRINT,
      namespace: { name: ns, labels: n?.metadata.labels ?? {} },
      allowedAuthorityHosts: [],
    });
  const review = createReviewer({
    identities: source,
    // As index.ts: the cached namespace unless it is missing or the review asks for a fresh one.
    resolve: (i, ns, options) => {
      const cached = options?.freshNamespace ? undefined : cache.namespace;
      if (cached) return target(i, ns, cached);
      reads.namespace++;
      return Promise.resolve(api.namespace).then((n) => target(i, ns, n));
    },
    settings: () => settings(),
    logger: createLogger({ name: "review-events", level: "silent" }),
    recordRefusal: (i, refusals) => events.push({ identity: i, refusals }),
  });
  return { review, reads, events };
}

function request(
  pod: { serviceAccountName?: string; identity?: string; env?: JsonObject[]; volumes?: JsonObject[] },
  options: { dryRun?: boolean } = {},
): AdmissionRequest {
  return podCreateRequest({ namespace: NS, ...pod, ...options });
}

const admitting = namespace({ "agentid.io/blueprint": "contoso-research" });
const closed = namespace({});

/** The one Event recorded: on `name`, with the answer's reason and message. */
function expectOneEvent(
  events: RecordedEvent[],
  name: string,
  response: { status?: { message?: string } },
  reason: string,
) {
  expect(events).toHaveLength(1);
  const [event] = events;
  expect(event?.identity.metadata.name).toBe(name);
  expect(event?.identity.metadata.namespace).toBe(NS);
  expect(event?.refusals.map((r) => r.reason)).toEqual([reason]);
  expect(`agentid: ${event?.refusals.map((r) => r.message).join("; ")}`).toBe(response.status?.message);
}

describe("refusal Events", () => {
  it("ServiceAccountMismatch: on the identity the annotation names", async () => {
    const { review, events } = world({ identities: [READY], namespace: admitting });
    const { response, reason } = await review(
      request({ identity: "research-agent", serviceAccountName: "default" }),
    );
    expect(reason).toBe("ServiceAccountMismatch");
    expectOneEvent(events, "research-agent", response, "ServiceAccountMismatch");
    expect(response.status?.message).toContain(
      "binds ServiceAccount research-agent, but the pod runs as default",
    );
  });

  it("ServiceAccountTaken: on the newer identity the pod named, not on the older holder", async () => {
    const older = identity("older", { serviceAccountName: "shared", created: "2026-11-01T00:00:00Z" });
    const newer = identity("newer", { serviceAccountName: "shared", created: "2026-12-01T00:00:00Z" });
    const { review, events } = world({ identities: [older, newer], namespace: admitting });
    const { response } = await review(request({ identity: "newer", serviceAccountName: "shared" }));
    expect(response.status?.message).toContain("held by the older AgentIdentity older, not newer");
    expectOneEvent(events, "newer", response, "ServiceAccountMismatch");
  });

  it("an identity being deleted: on it", async () => {
    const gone = identity("research-agent", { deleting: true });
    const { review, events } = world({ identities: [gone], namespace: admitting });
    const { response } = await review(
      request({ identity: "research-agent", serviceAccountName: "research-agent" }),
    );
    expect(response.status?.message).toContain("AgentIdentity research-agent is being deleted");
    expectOneEvent(events, "research-agent", response, "IdentityNotReady");
  });

  it("not Ready, and a blueprint that does not admit the namespace: on the identity", async () => {
    const notReady = world({
      identities: [identity("research-agent", { ready: false })],
      namespace: admitting,
    });
    const a = await notReady.review(request({ serviceAccountName: "research-agent" }));
    expectOneEvent(notReady.events, "research-agent", a.response, "IdentityNotReady");
    const refused = world({ identities: [READY], namespace: closed });
    const b = await refused.review(request({ serviceAccountName: "research-agent" }));
    expectOneEvent(refused.events, "research-agent", b.response, "BlueprintRefused");
  });

  it("a refusal of the pod itself: on its identity, naming objects and never a value from the pod", async () => {
    const { review, events } = world({ identities: [READY], namespace: admitting });
    const secretValue = "s3cr3t-Value-from-the-pod";
    const { response } = await review(
      request({
        serviceAccountName: "research-agent",
        env: [{ name: "API_KEY", value: secretValue }],
        volumes: [
          {
            name: "stolen",
            projected: {
              sources: [{ serviceAccountToken: { audience: "api://AzureADTokenExchange", path: "t" } }],
            },
          },
        ],
      }),
    );
    expectOneEvent(events, "research-agent", response, "ExchangeTokenVolume");
    expect(JSON.stringify(events[0]?.refusals)).not.toContain(secretValue);
  });

  it("no identity found: no Event, whatever the pod names", async () => {
    // An identity of that name in another namespace is not the pod's: the annotation is resolved in the
    // pod's namespace only.
    const elsewhere = identity("payroll-agent", {
      namespace: "payroll",
      serviceAccountName: "research-agent",
    });
    const { review, events, reads } = world({ identities: [READY, elsewhere], namespace: admitting });
    const named = await review(request({ identity: "payroll-agent", serviceAccountName: "research-agent" }));
    expect(named.reason).toBe("IdentityNotFound");
    expect(named.response.status?.message).toContain(
      "AgentIdentity payroll-agent does not exist in namespace research",
    );
    const unbound = await review(request({ serviceAccountName: "nobody" }));
    expect(unbound.reason).toBe("IdentityNotFound");
    expect(events).toEqual([]);
    // Each a cache miss, read once from the API server.
    expect(reads.identities).toBe(2);
  });

  it("a dry run records nothing", async () => {
    const { review, events } = world({ identities: [READY], namespace: admitting });
    const { outcome } = await review(
      request({ identity: "research-agent", serviceAccountName: "default" }, { dryRun: true }),
    );
    expect(outcome).toBe("refused");
    expect(events).toEqual([]);
  });
});

describe("a refusal the cache decided is checked against the API server once", () => {
  it("an identity made Ready just before the pod is injected, with one read", async () => {
    const { review, reads, events } = world(
      { identities: [identity("research-agent", { ready: false })], namespace: admitting },
      { identities: [READY], namespace: admitting },
    );
    expect((await review(request({ serviceAccountName: "research-agent" }))).outcome).toBe("injected");
    expect(reads).toEqual({ identities: 1, namespace: 0 });
    expect(events).toEqual([]);
  });

  it("an identity deleted and created again just before the pod is injected, with one read", async () => {
    const { review, reads } = world(
      { identities: [identity("research-agent", { deleting: true })], namespace: admitting },
      { identities: [READY], namespace: admitting },
    );
    const { outcome } = await review(
      request({ identity: "research-agent", serviceAccountName: "research-agent" }),
    );
    expect(outcome).toBe("injected");
    expect(reads).toEqual({ identities: 1, namespace: 0 });
  });

  it("a namespace labelled just before the pod is injected, with one read", async () => {
    const { review, reads } = world(
      { identities: [READY], namespace: closed },
      { identities: [READY], namespace: admitting },
    );
    expect((await review(request({ serviceAccountName: "research-agent" }))).outcome).toBe("injected");
    expect(reads).toEqual({ identities: 0, namespace: 1 });
  });

  it("a stream of pods naming a not-Ready identity costs one read each, and each is refused once", async () => {
    const broken = identity("research-agent", { ready: false });
    const { review, reads, events } = world({ identities: [broken], namespace: admitting });
    for (let i = 0; i < 10; i++) {
      expect(
        (await review(request({ identity: "research-agent", serviceAccountName: "research-agent" }))).reason,
      ).toBe("IdentityNotReady");
    }
    expect(reads).toEqual({ identities: 10, namespace: 0 });
    expect(events).toHaveLength(10);
  });

  it("at most one extra read: a stale identity, then stale namespace labels, refuse after the first", async () => {
    const { review, reads } = world(
      { identities: [identity("research-agent", { ready: false })], namespace: closed },
      { identities: [READY], namespace: admitting },
    );
    const { reason } = await review(request({ serviceAccountName: "research-agent" }));
    expect(reason).toBe("BlueprintRefused");
    expect(reads).toEqual({ identities: 1, namespace: 0 });
  });

  it("what a cache miss just read is not read again", async () => {
    const { review, reads } = world(
      { identities: [], namespace: admitting },
      { identities: [identity("research-agent", { ready: false })], namespace: admitting },
    );
    expect((await review(request({ serviceAccountName: "research-agent" }))).reason).toBe("IdentityNotReady");
    expect(reads).toEqual({ identities: 1, namespace: 0 });
  });

  it("what the cache admits is never read: no API call on the way to an injection", async () => {
    const { review, reads } = world({ identities: [READY], namespace: admitting });
    expect((await review(request({ serviceAccountName: "research-agent" }))).outcome).toBe("injected");
    expect(reads).toEqual({ identities: 0, namespace: 0 });
  });

  it("a refusal the cache made with no identity to re-check (a ServiceAccount no identity binds) reads only on the miss", async () => {
    const { review, reads } = world({ identities: [READY], namespace: admitting });
    await review(request({ serviceAccountName: "nobody" }));
    expect(reads).toEqual({ identities: 1, namespace: 0 });
  });
});

describe("an API read that times out", () => {
  it("refuses with what could not be read and records no Event", async () => {
    const events: RecordedEvent[] = [];
    const review = createReviewer({
      identities: {
        cached: () => undefined,
        cachedList: () => [],
        read: () => Promise.reject(new ApiReadTimeoutError(`read AgentIdentity x in namespace ${NS}`, 3000)),
        list: () =>
          Promise.reject(new ApiReadTimeoutError(`list the AgentIdentities of namespace ${NS}`, 3000)),
      },
      resolve: () => {
        throw new Error("not reached");
      },
      settings: () => settings(),
      logger: createLogger({ name: "review-events", level: "silent" }),
      recordRefusal: (i, refusals) => events.push({ identity: i, refusals }),
    });
    const { response, outcome, reason } = await review(request({ serviceAccountName: "research-agent" }));
    expect(outcome).toBe("refused");
    expect(reason).toBe("ApiServerTimeout");
    expect(response.status?.message).toBe(
      "agentid: could not list the AgentIdentities of namespace research from the API server within 3 s; try again",
    );
    expect(events).toEqual([]);
  });

  it("anything else is still thrown (the server answers it as an internal error)", async () => {
    const review = createReviewer({
      identities: {
        cached: () => undefined,
        cachedList: () => [],
        read: async () => undefined,
        list: () => Promise.reject(new Error("boom")),
      },
      resolve: () => {
        throw new Error("not reached");
      },
      settings: () => settings(),
      logger: createLogger({ name: "review-events", level: "silent" }),
    });
    await expect(review(request({ serviceAccountName: "research-agent" }))).rejects.toThrow("boom");
  });
});

describe("audit annotation", () => {
  it("an injection carries injected: <identity>@<generation> in the AdmissionReview response", async () => {
    const { review } = world({ identities: [READY], namespace: admitting });
    const { response } = await review(request({ serviceAccountName: "research-agent" }));
    expect(response.auditAnnotations).toEqual({ injected: "research-agent@2" });
    // As the API server reads it (it prefixes the key with the webhook's name in the audit log).
    const sent = JSON.parse(encodeReview(response)) as {
      response: { auditAnnotations?: Record<string, string> };
    };
    expect(sent.response.auditAnnotations).toEqual({ injected: "research-agent@2" });
  });

  it("a refusal carries refused: <reason>", async () => {
    const { review } = world(
      { identities: [READY], namespace: closed },
      { identities: [READY], namespace: closed },
    );
    const { response } = await review(request({ serviceAccountName: "research-agent" }));
    const sent = JSON.parse(encodeReview(response)) as {
      response: { auditAnnotations?: Record<string, string> };
    };
    expect(sent.response.auditAnnotations).toEqual({ refused: "BlueprintRefused" });
  });
});
