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
import type { JsonObject } from "../../src/webhook/raw.ts";
import { INJECTED_APP_ENV, pod, SECRET } from "./arbitraries.ts";
import { settings, target } from "./support.ts";

/**
 * Properties of the mutation over arbitrary valid pods: the patch applies, keeps every original field,
 * is idempotent, and never gives an app container the token, a host port or the client secret.
 */

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
    type Field = "containers" | "initContainers" | "ephemeralContainers";
    type Spec = { [F in Field]?: JsonObject[] } & { volumes?: JsonObject[] };
    type Place = { field: Field; index: number; before: number };
    /**
     * Where an attack lands: a container of any of the three lists (a new one appended when `index` is past
     * the end) and a place among its ports (after `before` harmless ones), so a check that only looks at
     * the first container, the first port or the app containers misses some.
     */
    const place: fc.Arbitrary<Place> = fc.record({
      field: fc.constantFrom<Field>("containers", "initContainers", "ephemeralContainers"),
      index: fc.nat({ max: 4 }),
      before: fc.nat({ max: 2 }),
    });
    const containerAt = (spec: Spec, at: Place): JsonObject => {
      const list = spec[at.field] ?? [];
      spec[at.field] = list;
      if (at.index < list.length) return list[at.index]!;
      const c: JsonObject = { name: `attacker-${at.field}`, image: "app:1" };
      list.push(c);
      return c;
    };
    const withPort = (spec: Spec, at: Place, port: JsonObject) => {
      const c = containerAt(spec, at);
      // Harmless ports never clash with the sidecar's (5000, support.ts) nor with each other.
      const harmless = Array.from({ length: at.before }, (_, i) => ({ containerPort: 9100 + i }));
      c.ports = [...harmless, port, ...((c.ports as JsonObject[] | undefined) ?? [])];
    };
    const addVolume = (spec: Spec, v: JsonObject) => {
      spec.volumes = [...(spec.volumes ?? []), v];
    };
    const mount = (c: JsonObject, name: string) => {
      c.volumeMounts = [...((c.volumeMounts as JsonObject[] | undefined) ?? []), { name, mountPath: "/x" }];
    };
    const attack = fc.constantFrom<(spec: Spec, at: Place) => void>(
      (spec, at) => withPort(spec, at, { containerPort: 8080, hostPort: 8080 }),
      (spec, at) => {
        // The sidecar's port: not for an ephemeral container, which has no ports of its own (an app one).
        withPort(spec, at.field === "ephemeralContainers" ? { ...at, field: "containers" } : at, {
          containerPort: 5000,
        });
      },
      (spec) =>
        addVolume(spec, {
          name: "mine",
          projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, path: "t" } }] },
        }),
      (spec, at) => mount(containerAt(spec, at), TOKEN_VOLUME),
      (spec, at) => {
        addVolume(spec, { name: "creds", secret: { secretName: SECRET } });
        mount(containerAt(spec, at), "creds");
      },
      (spec, at) => {
        // The secret as one of several sources of a projected volume.
        addVolume(spec, {
          name: "creds",
          projected: { sources: [{ configMap: { name: "settings" } }, { secret: { name: SECRET } }] },
        });
        mount(containerAt(spec, at), "creds");
      },
      (spec, at) => {
        const c = containerAt(spec, at);
        c.env = [
          ...((c.env as JsonObject[] | undefined) ?? []),
          { name: "S", valueFrom: { secretKeyRef: { name: SECRET, key: "k" } } },
        ];
      },
      (spec, at) => {
        containerAt(spec, at).envFrom = [
          { configMapRef: { name: "settings" } },
          { secretRef: { name: SECRET } },
        ];
      },
    );
    fc.assert(
      fc.property(pod, attack, place, fc.boolean(), (p, change, at, native) => {
        const attacked = structuredClone(p) as unknown as { spec: Spec };
        change(attacked.spec, at);
        const result = mutatePod({
          pod: attacked,
          target: target({ secretNames: [SECRET] }),
          settings: settings({ native }),
        });
        expect(result.allowed).toBe(false);
      }),
      { numRuns: 400 },
    );
  });
});
