import { readFileSync } from "node:fs";
import jsonpatch, { type Operation } from "fast-json-patch";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createLogger } from "../../src/lib/log.ts";
import {
  type AdmissionRequest,
  allow,
  deny,
  encodeReview,
  reviewEnvelope,
} from "../../src/webhook/admission.ts";
import {
  deepFrozen,
  encodePatch,
  PATCH_CACHE_MAX_TEXT,
  patchBase64,
  patchCacheStats,
  remembered,
} from "../../src/webhook/json-text.ts";
import { appEnvFor } from "../../src/webhook/memo.ts";
import { mutatePod } from "../../src/webhook/mutate.ts";
import type { JsonPatchOperation } from "../../src/webhook/patch.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { createReviewer } from "../../src/webhook/review.ts";
import { DEFAULT_RESOURCES, sidecarSettings } from "../../src/webhook/settings.ts";
import { createTargetCache, resolveTarget, type TargetInput } from "../../src/webhook/target.ts";
import type { InjectionTarget } from "../../src/webhook/types.ts";
import { settings as testSettings, target as testTarget } from "./support.ts";

/**
 * The memoised per-identity work (target cache, rendered sidecar, remembered JSON text, patch outlines)
 * must answer exactly what rendering everything afresh answers, and must never serve a stale version.
 */

const ROOT = new URL("../fixtures/webhook/", import.meta.url);

/** The fixture objects as the informer cache holds them: with a uid and a resourceVersion. */
function objects() {
  const docs = parseAllDocuments(readFileSync(new URL("objects.yaml", ROOT), "utf8")).map((d, i) => {
    const doc = d.toJSON();
    doc.metadata = { uid: `uid-${i}`, resourceVersion: "1", ...doc.metadata };
    return doc;
  });
  const identity = docs.find((d) => d.kind === "AgentIdentity") as AgentIdentity;
  const blueprint = docs.find((d) => d.kind === "AgentIdentityBlueprint") as AgentIdentityBlueprint;
  const namespace = docs.find((d) => d.kind === "Namespace") as {
    metadata: { name: string; labels?: Record<string, string> };
  };
  return { identity, blueprint, namespace };
}

function input(o: ReturnType<typeof objects>, overrides: Partial<TargetInput> = {}): TargetInput {
  return {
    identity: o.identity,
    blueprint: o.blueprint,
    namespace: { name: o.namespace.metadata.name, labels: o.namespace.metadata.labels ?? {} },
    allowedAuthorityHosts: [],
    ...overrides,
  };
}

function targetOf(r: ReturnType<typeof resolveTarget>): InjectionTarget {
  if (!r.ok) throw new Error(r.refusal.message);
  return r.target;
}

function pod(annotations: Record<string, string> = {}): JsonObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "research-", annotations },
    spec: {
      serviceAccountName: "research-agent",
      containers: [{ name: "app", image: "app:1" }],
    },
  };
}

const decode = (base64: string | undefined) => JSON.parse(Buffer.from(base64 ?? "", "base64").toString());

describe("target cache", () => {
  it("renders an identity version once, frozen, and equal to rendering it afresh", () => {
    const o = objects();
    const cached = createTargetCache();
    const first = targetOf(cached(input(o)));
    // Another object of the same version (an API read after a cache miss) finds the same rendering.
    const again = targetOf(cached(input({ ...o, identity: structuredClone(o.identity) })));
    expect(again).toBe(first);
    expect(Object.isFrozen(first) && Object.isFrozen(first.env)).toBe(true);
    expect(first).toEqual(targetOf(resolveTarget(input(o))));
  });

  it("renders again when the identity or its blueprint changes (a new resourceVersion)", () => {
    const o = objects();
    const cached = createTargetCache();
    const before = targetOf(cached(input(o)));
    const identity = structuredClone(o.identity);
    identity.metadata.resourceVersion = "2";
    identity.spec.sidecar = { ...identity.spec.sidecar, port: 5123 };
    const changed = targetOf(cached(input(o, { identity })));
    expect(changed.port).toBe(5123);
    expect(before.port).not.toBe(5123);
    const blueprint = structuredClone(o.blueprint);
    blueprint.metadata.resourceVersion = "2";
    blueprint.spec.tenantId = "00000000-0000-4000-8000-000000000001";
    const rebased = targetOf(cached(input(o, { identity, blueprint })));
    expect(rebased.env).toContainEqual({ name: "AzureAd__TenantId", value: blueprint.spec.tenantId });
  });

  it("checks the namespace for every pod, also after a rendering for an admitted one", () => {
    const o = objects();
    const cached = createTargetCache();
    expect(cached(input(o)).ok).toBe(true);
    const other = cached(input(o, { namespace: { name: "elsewhere", labels: {} } }));
    expect(other).toMatchObject({ ok: false, refusal: { reason: "BlueprintRefused" } });
  });

  it("judges a new version of the identity again (no longer Ready → refused)", () => {
    const o = objects();
    const cached = createTargetCache();
    const same = input(o);
    expect(cached(same)).toBe(cached(same));
    const identity = structuredClone(o.identity);
    identity.metadata.resourceVersion = "2";
    for (const c of identity.status?.conditions ?? []) if (c.type === "Ready") c.status = "False";
    expect(cached(input(o, { identity }))).toMatchObject({
      ok: false,
      refusal: { reason: "IdentityNotReady" },
    });
  });

  it("renders objects without a uid or resourceVersion every time, unfrozen", () => {
    const o = objects();
    delete o.identity.metadata.uid;
    const cached = createTargetCache();
    const a = targetOf(cached(input(o)));
    const b = targetOf(cached(input(o)));
    expect(a).not.toBe(b);
    expect(Object.isFrozen(a)).toBe(false);
  });

  it("keeps at most its limit of versions", () => {
    const o = objects();
    const cached = createTargetCache(2);
    const versions = ["1", "2", "3"].map((rv) => {
      const identity = structuredClone(o.identity);
      identity.metadata.resourceVersion = rv;
      return { identity, target: targetOf(cached(input(o, { identity }))) };
    });
    // A new object of version 1 (evicted) is rendered again; version 3 is still there.
    const v1 = structuredClone(versions[0]?.identity as AgentIdentity);
    expect(targetOf(cached(input(o, { identity: v1 })))).not.toBe(versions[0]?.target);
    const v3 = structuredClone(versions[2]?.identity as AgentIdentity);
    expect(targetOf(cached(input(o, { identity: v3 })))).toBe(versions[2]?.target);
  });
});

describe("memoised sidecar rendering", () => {
  const frozenTarget = () => deepFrozen(testTarget());
  const frozenSettings = () =>
    sidecarSettings({
      image: "ghcr.io/agentid/sidecar:test",
      native: true,
      defaultResources: DEFAULT_RESOURCES,
    });

  it("gives the same patch as rendering afresh, and shares the frozen container between pods", () => {
    const target = frozenTarget();
    const settings = frozenSettings();
    const a = mutatePod({ pod: pod(), target, settings });
    const b = mutatePod({ pod: pod(), target, settings });
    const fresh = mutatePod({ pod: pod(), target: testTarget(), settings: { ...settings } });
    if (!a.allowed || !b.allowed || !fresh.allowed) throw new Error("refused");
    expect(a.patch).toEqual(fresh.patch);
    const sidecarOf = (patch: JsonPatchOperation[]) =>
      patch.find((op) => op.path === "/spec/initContainers") as { value: unknown[] };
    expect(sidecarOf(b.patch).value[0]).toBe(sidecarOf(a.patch).value[0]);
    expect(Object.isFrozen(sidecarOf(a.patch).value[0])).toBe(true);
  });

  it("renders a pod's own resources for that pod only", () => {
    const target = frozenTarget();
    const settings = frozenSettings();
    const own = mutatePod({ pod: pod({ "agentid.io/sidecar-memory-limit": "300Mi" }), target, settings });
    const plain = mutatePod({ pod: pod(), target, settings });
    if (!own.allowed || !plain.allowed) throw new Error("refused");
    const limits = (patch: JsonPatchOperation[]) =>
      (
        (patch.find((op) => op.path === "/spec/initContainers") as { value: unknown[] }).value[0] as {
          resources: { limits: Record<string, string> };
        }
      ).resources.limits.memory;
    expect(limits(own.patch)).toBe("300Mi");
    expect(limits(plain.patch)).toBe(DEFAULT_RESOURCES.limits?.memory);
  });

  it("keeps the app variables per target only while the sidecar listens on the target's port", () => {
    const target = frozenTarget();
    const render = () => [{ name: "SIDECAR_URL", value: "x" }];
    const a = appEnvFor(target, target.port, render);
    expect(appEnvFor(target, target.port, render)).toBe(a);
    expect(Object.isFrozen(a) && Object.isFrozen(a[0])).toBe(true);
    // A reinvoked pod whose sidecar was injected on another port: rendered for it, not memoised.
    const other = appEnvFor(target, target.port + 1, render);
    expect(other).not.toBe(a);
    expect(appEnvFor(target, target.port + 1, render)).not.toBe(other);
  });

  it("settings from sidecarSettings are frozen copies (the shared defaults stay writable)", () => {
    const settings = frozenSettings();
    expect(Object.isFrozen(settings) && Object.isFrozen(settings.defaultResources.requests)).toBe(true);
    expect(Object.isFrozen(DEFAULT_RESOURCES)).toBe(false);
  });
});

describe("patch and answer text", () => {
  const container = remembered({ name: "c", env: [{ name: "A", value: 'quote " and \u2028' }] });
  const patches: JsonPatchOperation[][] = [
    [{ op: "add", path: "/spec/initContainers/0", value: container }],
    [{ op: "add", path: "/spec/initContainers", value: [container] }],
    [
      { op: "add", path: "/spec/containers/0/env/-", value: { name: "SIDECAR_URL", value: "x" } },
      { op: "add", path: "/spec/volumes", value: [container, container] },
      { op: "add", path: "/metadata/annotations/agentid.io~1injected", value: "a@1" },
      { op: "remove", path: "/spec/x" },
    ],
  ];

  it("encodes exactly what JSON.stringify gives, and its base64", () => {
    for (const patch of patches) {
      expect(encodePatch(patch)).toBe(JSON.stringify(patch));
      expect(decode(patchBase64(patch))).toEqual(patch);
      // A second time from the outline cache: the same text.
      expect(Buffer.from(patchBase64(patch), "base64").toString()).toBe(JSON.stringify(patch));
    }
  });

  it("keeps patches apart whose paths would read alike if the outline did not quote them", () => {
    // An outline line is `op path value`; a path with a space, newline or quote in it must not pass for
    // two members or two operations.
    const other = remembered({ name: "e" });
    const alike: JsonPatchOperation[][] = [
      [
        { op: "add", path: "/a", value: container },
        { op: "add", path: "/b", value: other },
      ],
      [
        { op: "add", path: "/a", value: 1 },
        { op: "add", path: "/c", value: container },
      ],
      // Unquoted, this path would give the outline of the patch above.
      [{ op: "add", path: "/a 1\nadd /c", value: container }],
      [{ op: "add", path: '/a "b"', value: container }],
      [{ op: "add", path: "/a", value: [container] }],
      [{ op: "add", path: "/a", value: { ...container } }],
      [
        { op: "copy", from: "/x", path: "/a" } as JsonPatchOperation,
        { op: "add", path: "/a", value: container },
      ],
    ];
    for (let round = 0; round < 2; round++) {
      for (const patch of alike)
        expect(Buffer.from(patchBase64(patch), "base64").toString()).toBe(JSON.stringify(patch));
    }
  });

  it("keeps the base64 of small patches only: a pod with thousands of containers leaves nothing behind", () => {
    const sidecar = remembered({ name: "agentid-sidecar", image: "s:1" });
    const url = remembered({ name: "SIDECAR_URL", value: "http://127.0.0.1:5000" });
    // What the webhook answers for a pod of n app containers: the sidecar, SIDECAR_URL for each container.
    const patchFor = (n: number): JsonPatchOperation[] => [
      { op: "add", path: "/spec/initContainers", value: [sidecar] },
      ...Array.from({ length: n }, (_, i) => ({
        op: "add" as const,
        path: `/spec/containers/${i}/env`,
        value: [url, { name: "AGENTID_AGENT_ID", value: `agent-${i}` }],
      })),
    ];
    const before = patchCacheStats();
    const small = patchFor(2);
    expect(decode(patchBase64(small))).toEqual(small);
    const afterSmall = patchCacheStats();
    expect(afterSmall.entries).toBe(before.entries + 1); // a typical pod's patch is kept
    for (const n of [200, 5000]) {
      const large = patchFor(n);
      expect(decode(patchBase64(large))).toEqual(large);
      expect(decode(patchBase64(large))).toEqual(large); // the second time encoded again, the same
    }
    const afterLarge = patchCacheStats();
    expect(afterLarge.entries).toBe(afterSmall.entries);
    expect(afterLarge.longestText).toBeLessThanOrEqual(PATCH_CACHE_MAX_TEXT);
  });

  it("keeps patches apart that differ only in a path, a value's JSON type, or the order of remembered values", () => {
    // Same first remembered value and the same number of operations: the cache compares them one by one.
    const other = remembered({ name: "f" });
    const alike: JsonPatchOperation[][] = [
      [
        { op: "add", path: "/spec/containers/0/env/-", value: container },
        { op: "add", path: "/spec/containers/1/env/-", value: other },
      ],
      [
        { op: "add", path: "/spec/containers/0/env/-", value: container },
        { op: "add", path: "/spec/containers/2/env/-", value: other },
      ],
      [
        { op: "add", path: "/spec/containers/0/env/-", value: container },
        { op: "add", path: "/metadata/annotations", value: 5 },
      ],
      [
        { op: "add", path: "/spec/containers/0/env/-", value: container },
        { op: "add", path: "/metadata/annotations", value: "5" },
      ],
      [{ op: "add", path: "/spec/containers/0/env", value: container }],
      // The shorter array first: a longer one that starts alike must not pass for it.
      [{ op: "add", path: "/spec/containers/0/env", value: [container] }],
      [{ op: "add", path: "/spec/containers/0/env", value: [container, container] }],
      [{ op: "add", path: "/spec/containers/0/env", value: [container, other] }],
    ];
    for (let round = 0; round < 2; round++) {
      for (const patch of alike)
        expect(Buffer.from(patchBase64(patch), "base64").toString()).toBe(JSON.stringify(patch));
    }
  });

  it("keeps patches that differ only in a remembered value apart", () => {
    const other = remembered({ name: "d" });
    const a = patchBase64([{ op: "add", path: "/p", value: container }]);
    const b = patchBase64([{ op: "add", path: "/p", value: other }]);
    expect(decode(a)[0].value).toEqual(container);
    expect(decode(b)[0].value).toEqual(other);
  });

  it("answers what reviewEnvelope means, for allowed, refused and altered responses", () => {
    const allowed = allow("uid-1", patches[2] as JsonPatchOperation[], { injected: "a@1" });
    expect(JSON.parse(encodeReview(allowed))).toEqual(reviewEnvelope(allowed));
    const refused = deny("uid-2", 'bad "input"', 400);
    expect(JSON.parse(encodeReview(refused))).toEqual(reviewEnvelope(refused));
    // A patch that is not what allow encoded is escaped like any other string.
    const altered = { ...allowed, patch: 'not "base64"' };
    expect(JSON.parse(encodeReview(altered))).toEqual(reviewEnvelope(altered));
  });
});

describe("golden fixtures through the caches", () => {
  const o = objects();
  const cached = createTargetCache();
  const review = (settings: ReturnType<typeof testSettings>) =>
    createReviewer({
      identities: {
        cached: (_ns, name) => (name === o.identity.metadata.name ? o.identity : undefined),
        cachedList: () => [o.identity],
        read: async () => undefined,
        list: async () => [],
      },
      resolve: async (identity, namespace) =>
        cached({
          identity,
          blueprint: o.blueprint,
          namespace: { name: namespace, labels: o.namespace.metadata.labels ?? {} },
          allowedAuthorityHosts: [],
        }),
      settings: () => settings,
      logger: createLogger({ name: "memo", level: "silent" }),
    });

  for (const name of [
    "single-container",
    "several-containers",
    "existing-init-containers",
    "users-native-sidecar",
    "no-native-sidecars",
    "resource-overrides",
    "reinvocation",
    "idempotence",
  ]) {
    it(`${name}: the same patch twice, as patch.json says`, async () => {
      const fixture = parse(readFileSync(new URL(`${name}/input.yaml`, ROOT), "utf8")) as {
        pod?: JsonObject;
        base?: string;
        change?: Operation[];
        settings?: Parameters<typeof testSettings>[0];
      };
      const before = fixture.base
        ? (parse(readFileSync(new URL(`${fixture.base}/pod.yaml`, ROOT), "utf8")) as JsonObject)
        : (fixture.pod as JsonObject);
      const object = fixture.change
        ? jsonpatch.applyPatch(structuredClone(before), fixture.change, true, false).newDocument
        : before;
      const settings = deepFrozen(testSettings(fixture.settings ?? {}));
      const reviewer = review(settings);
      const expected = JSON.parse(readFileSync(new URL(`${name}/patch.json`, ROOT), "utf8"));
      for (const uid of ["first", "second"]) {
        const request: AdmissionRequest = {
          uid,
          operation: "CREATE",
          namespace: "research",
          resource: "pods",
          subResource: "",
          object: structuredClone(object),
          oldObject: undefined,
          dryRun: false,
          user: "alice@contoso.com",
        };
        const { response } = await reviewer(request);
        expect(response.allowed).toBe(true);
        expect(response.patch ? decode(response.patch) : []).toEqual(expected);
        expect(JSON.parse(encodeReview(response)).response).toEqual(JSON.parse(JSON.stringify(response)));
      }
    });
  }
});
