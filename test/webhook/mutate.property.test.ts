import fc from "fast-check";
import jsonpatch, { type Operation } from "fast-json-patch";
import { describe, expect, it } from "vitest";
import {
  ANNOTATION_INJECTED,
  SIDECAR_CONTAINER,
  TOKEN_AUDIENCE,
  TOKEN_VOLUME,
} from "../../src/api/constants.ts";
import { mutatePod, SIDECAR_URL } from "../../src/webhook/mutate.ts";
import type { Json, JsonObject } from "../../src/webhook/raw.ts";
import { settings, target } from "./support.ts";

/**
 * Properties of the mutation over arbitrary valid pods: the patch applies, keeps every original field,
 * is idempotent, and never gives an app container the token, a host port or the client secret.
 */

const SECRET = "agent-client-secret";
/** What injection adds to app containers (test/webhook/support.ts's target). */
const INJECTED_APP_ENV = [SIDECAR_URL, "AGENTID_AGENT_ID"];
const names = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
// Keys a user's tooling may add that our models do not know, including '/' and '~' that must be escaped.
const unknownKey = fc.stringMatching(/^x-[a-z~/.]{1,8}$/);
const jsonValue: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>;
const extras = fc.dictionary(unknownKey, jsonValue, { maxKeys: 2 });

const volume = (name: string) =>
  fc.oneof(
    fc.constant<JsonObject>({ name, emptyDir: {} }),
    fc.constant<JsonObject>({ name, configMap: { name: "settings" } }),
    fc.constant<JsonObject>({ name, secret: { secretName: "other-secret" } }),
    fc.constant<JsonObject>({
      name,
      projected: { sources: [{ serviceAccountToken: { audience: "vault", path: "t" } }] },
    }),
  );

function container(name: string, volumeNames: string[], opts: { native?: boolean }) {
  return fc
    .record({
      env: fc.option(
        fc.uniqueArray(
          fc.oneof(
            fc.record({ name: fc.constantFrom("A", "B", "LOG_LEVEL"), value: fc.string({ maxLength: 5 }) }),
            fc.constant({ name: SIDECAR_URL, value: "http://127.0.0.1:7000" }),
          ),
          { maxLength: 3, selector: (e) => e.name },
        ),
        { nil: undefined },
      ),
      ports: fc.option(
        fc.array(fc.record({ containerPort: fc.integer({ min: 5001, max: 9000 }) }), { maxLength: 2 }),
        {
          nil: undefined,
        },
      ),
      mounts: fc.subarray(volumeNames),
      extra: extras,
    })
    .map(({ env, ports, mounts, extra }) => {
      const c: JsonObject = { name, image: "app:1", ...extra };
      if (env) c.env = env;
      if (ports) c.ports = ports;
      if (mounts.length > 0) c.volumeMounts = mounts.map((m) => ({ name: m, mountPath: `/mnt/${m}` }));
      if (opts.native) c.restartPolicy = "Always";
      return c;
    });
}

const pod: fc.Arbitrary<JsonObject> = fc
  .record({
    containerNames: fc.uniqueArray(names, { minLength: 1, maxLength: 4 }),
    initNames: fc.uniqueArray(
      names.map((n) => `init-${n}`),
      { maxLength: 2 },
    ),
    volumeNames: fc.uniqueArray(
      names.map((n) => `vol-${n}`),
      { maxLength: 3 },
    ),
    annotations: fc.option(
      fc.dictionary(fc.stringMatching(/^[a-z./~]{1,12}$/), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
      {
        nil: undefined,
      },
    ),
    generateName: fc.boolean(),
    extra: extras,
  })
  .chain(({ containerNames, initNames, volumeNames, annotations, generateName, extra }) =>
    fc
      .record({
        containers: fc.tuple(...containerNames.map((n) => container(n, volumeNames, {}))),
        inits: fc.tuple(
          ...initNames.map((n) => fc.boolean().chain((native) => container(n, volumeNames, { native }))),
        ),
        volumes: fc.tuple(...volumeNames.map((n) => volume(n))),
      })
      .map(({ containers, inits, volumes }) => {
        const metadata: JsonObject = generateName ? { generateName: "web-" } : { name: "web" };
        // Never our own annotation: the generator makes fresh pods; reinvocation is the second property.
        if (annotations)
          metadata.annotations = Object.fromEntries(
            Object.entries(annotations).filter(([k]) => k !== ANNOTATION_INJECTED),
          );
        const spec: JsonObject = { serviceAccountName: "research-agent", containers, ...extra };
        if (inits.length > 0) spec.initContainers = inits;
        if (volumes.length > 0) spec.volumes = volumes;
        // As the API server sends it: JSON (no -0, no undefined).
        return JSON.parse(JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata, spec })) as JsonObject;
      }),
  );

function apply(doc: JsonObject, patch: unknown[]): JsonObject {
  // validate: every operation must be legal against the document (no add into a missing parent).
  return jsonpatch.applyPatch(structuredClone(doc), patch as Operation[], true, false).newDocument;
}

const modes = fc.record({ native: fc.boolean(), projectedToken: fc.boolean() });

/** The pod with what injection adds taken out again; must equal the original. */
function strip(mutated: JsonObject, original: JsonObject): JsonObject {
  const out = structuredClone(mutated) as { metadata: JsonObject; spec: JsonObject };
  const o = original as { metadata: JsonObject; spec: JsonObject };
  const annotations = out.metadata.annotations as JsonObject | undefined;
  if (annotations) {
    delete annotations[ANNOTATION_INJECTED];
    if (o.metadata.annotations === undefined && Object.keys(annotations).length === 0)
      delete out.metadata.annotations;
  }
  for (const field of ["initContainers", "containers"] as const) {
    const list = out.spec[field] as JsonObject[] | undefined;
    if (!list) continue;
    const origList = (o.spec[field] as JsonObject[] | undefined) ?? [];
    const kept = list.filter((c) => c.name !== SIDECAR_CONTAINER);
    kept.forEach((c, i) => {
      const before = origList[i];
      const env = c.env as JsonObject[] | undefined;
      if (!env || !before) return;
      const had = new Set(((before.env as JsonObject[] | undefined) ?? []).map((e) => e.name));
      c.env = env.filter((e) => had.has(e.name) || !INJECTED_APP_ENV.includes(String(e.name)));
      if (before.env === undefined) delete c.env;
    });
    if (kept.length === 0 && o.spec[field] === undefined) delete out.spec[field];
    else out.spec[field] = kept;
  }
  const volumes = out.spec.volumes as JsonObject[] | undefined;
  if (volumes) {
    const kept = volumes.filter((v) => v.name !== TOKEN_VOLUME);
    if (kept.length === 0 && o.spec.volumes === undefined) delete out.spec.volumes;
    else out.spec.volumes = kept;
  }
  return out as unknown as JsonObject;
}

describe("mutatePod properties", () => {
  it("the patch applies, keeps every original field, and applying it again changes nothing", () => {
    fc.assert(
      fc.property(pod, modes, (p, m) => {
        const before = structuredClone(p);
        const first = mutatePod({
          pod: p,
          target: target({ projectedToken: m.projectedToken }),
          settings: settings({ native: m.native }),
        });
        expect(first.allowed).toBe(true);
        if (!first.allowed) return;
        expect(p).toEqual(before); // the input is never modified
        const once = apply(p, first.patch);
        expect(strip(once, p)).toEqual(p);
        const second = mutatePod({
          pod: once,
          target: target({ projectedToken: m.projectedToken }),
          settings: settings({ native: m.native }),
        });
        expect(second.allowed).toBe(true);
        if (!second.allowed) return;
        expect(second.patch).toEqual([]);
        expect(apply(once, second.patch)).toEqual(once);
      }),
      { numRuns: 300 },
    );
  });

  it("every app container gets SIDECAR_URL once, and only the sidecar gets the token volume", () => {
    fc.assert(
      fc.property(pod, modes, (p, m) => {
        const result = mutatePod({
          pod: p,
          target: target({ projectedToken: m.projectedToken }),
          settings: settings({ native: m.native }),
        });
        if (!result.allowed) throw new Error("refused");
        const out = apply(p, result.patch) as {
          spec: { containers: JsonObject[]; initContainers?: JsonObject[] };
        };
        const all = [...(out.spec.initContainers ?? []), ...out.spec.containers];
        expect(all.filter((c) => c.name === SIDECAR_CONTAINER)).toHaveLength(1);
        for (const c of out.spec.containers.filter((c) => c.name !== SIDECAR_CONTAINER)) {
          expect(((c.env as JsonObject[]) ?? []).filter((e) => e.name === SIDECAR_URL)).toHaveLength(1);
        }
        for (const c of all) {
          const mounts = ((c.volumeMounts as JsonObject[] | undefined) ?? []).map((v) => v.name);
          if (c.name === SIDECAR_CONTAINER) expect(mounts.includes(TOKEN_VOLUME)).toBe(m.projectedToken);
          else expect(mounts).not.toContain(TOKEN_VOLUME);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("the sidecar comes first and its postStart hook waits for /readyz, so nothing that calls it starts earlier", () => {
    fc.assert(
      fc.property(pod, modes, (p, m) => {
        const result = mutatePod({
          pod: p,
          target: target({ projectedToken: m.projectedToken }),
          settings: settings({ native: m.native }),
        });
        if (!result.allowed) throw new Error("refused");
        const out = apply(p, result.patch) as {
          spec: { containers: JsonObject[]; initContainers?: JsonObject[] };
        };
        // The kubelet starts containers in this order and the next one only after the hook returned.
        const list = m.native ? (out.spec.initContainers ?? []) : out.spec.containers;
        const sidecar = list[0] ?? {};
        expect(sidecar.name).toBe(SIDECAR_CONTAINER);
        expect(sidecar.restartPolicy).toBe(m.native ? "Always" : undefined);
        expect(sidecar.startupProbe).toBeUndefined();
        const hook = (sidecar.lifecycle as { postStart?: { exec?: { command?: string[] } } } | undefined)
          ?.postStart?.exec?.command;
        expect(hook?.slice(-4)).toEqual(["sidecar", "--probe", "--probe-timeout", "60"]);
      }),
      { numRuns: 100 },
    );
  });

  it("a pod that would give an app container a host port, the exchange token or the secret is refused", () => {
    const attack = fc.constantFrom<
      (p: { spec: { containers: JsonObject[]; volumes?: JsonObject[] } }) => void
    >(
      (p) => {
        p.spec.containers[0]!.ports = [{ containerPort: 8080, hostPort: 8080 }];
      },
      (p) => {
        p.spec.volumes = [
          ...(p.spec.volumes ?? []),
          {
            name: "mine",
            projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, path: "t" } }] },
          },
        ];
      },
      (p) => {
        p.spec.containers[0]!.volumeMounts = [{ name: TOKEN_VOLUME, mountPath: "/t" }];
      },
      (p) => {
        p.spec.volumes = [...(p.spec.volumes ?? []), { name: "creds", secret: { secretName: SECRET } }];
        p.spec.containers[0]!.volumeMounts = [{ name: "creds", mountPath: "/c" }];
      },
      (p) => {
        p.spec.containers[0]!.env = [{ name: "S", valueFrom: { secretKeyRef: { name: SECRET, key: "k" } } }];
      },
      (p) => {
        p.spec.containers[0]!.envFrom = [{ secretRef: { name: SECRET } }];
      },
    );
    fc.assert(
      fc.property(pod, attack, fc.boolean(), (p, change, native) => {
        const attacked = structuredClone(p) as unknown as {
          spec: { containers: JsonObject[]; volumes?: JsonObject[] };
        };
        change(attacked);
        const result = mutatePod({
          pod: attacked,
          target: target({ secretNames: [SECRET] }),
          settings: settings({ native }),
        });
        expect(result.allowed).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});
