import fc from "fast-check";
import jsonpatch, { type Operation } from "fast-json-patch";
import { describe, expect, it } from "vitest";
import { SIDECAR_CONTAINER, TOKEN_VOLUME } from "../../src/api/constants.ts";
import { podCreateRefusals, podUpdateRefusals } from "../../src/webhook/guard.ts";
import { mutatePod } from "../../src/webhook/mutate.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { pod } from "./arbitraries.ts";
import { settings, target } from "./support.ts";

/**
 * The guard against the mutation over arbitrary valid pods (test/webhook/arbitraries.ts): whatever the
 * mutating webhook produces passes the guard, and any such pod where another container mounts the token
 * volume, or whose sidecar runs another image or command, is refused.
 */

type Pod = { spec: { containers: JsonObject[]; initContainers?: JsonObject[] } };

function injected(p: JsonObject, native: boolean): Pod & JsonObject {
  const s = settings({ native });
  const result = mutatePod({ pod: p, target: target(), settings: s });
  if (!result.allowed) throw new Error(`refused: ${JSON.stringify(result.refusals)}`);
  return jsonpatch.applyPatch(structuredClone(p), result.patch as Operation[], true, false)
    .newDocument as Pod & JsonObject;
}

const judge = (p: unknown, native: boolean) =>
  podCreateRefusals(p, "research-agent", { ok: true, target: target(), settings: settings({ native }) });

describe("guard properties", () => {
  it("every pod the mutating webhook produces passes the guard, and an UPDATE that changes nothing too", () => {
    fc.assert(
      fc.property(pod, fc.boolean(), (p, native) => {
        const out = injected(p, native);
        expect(judge(out, native)).toEqual([]);
        expect(podUpdateRefusals(out, out)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("a pod where any container but the sidecar mounts the token volume is refused", () => {
    fc.assert(
      fc.property(pod, fc.boolean(), fc.nat(), (p, native, pick) => {
        const out = injected(p, native);
        const others = [...(out.spec.initContainers ?? []), ...out.spec.containers].filter(
          (c) => c.name !== SIDECAR_CONTAINER,
        );
        const victim = others[pick % others.length] as JsonObject;
        const mounts = (victim.volumeMounts as JsonObject[] | undefined) ?? [];
        victim.volumeMounts = [...mounts, { name: TOKEN_VOLUME, mountPath: "/stolen", readOnly: true }];
        const refusals = judge(out, native);
        expect(refusals.map((r) => r.reason)).toContain("TokenVolumeMount");
        expect(refusals.map((r) => r.message).join()).toContain(`'${String(victim.name)}'`);
      }),
      { numRuns: 200 },
    );
  });

  it("a pod whose sidecar runs another image or command is refused at CREATE, and at UPDATE for the image", () => {
    const other = fc.oneof(
      fc.record({ image: fc.string({ minLength: 1, maxLength: 20 }) }),
      fc.record({ command: fc.array(fc.string({ maxLength: 10 }), { minLength: 1, maxLength: 3 }) }),
    );
    fc.assert(
      fc.property(pod, fc.boolean(), other, (p, native, change) => {
        const out = injected(p, native);
        const sidecar = [...(out.spec.initContainers ?? []), ...out.spec.containers].find(
          (c) => c.name === SIDECAR_CONTAINER,
        ) as JsonObject;
        const before = structuredClone(out);
        const same =
          JSON.stringify(Object.values(change)[0]) === JSON.stringify(sidecar[Object.keys(change)[0] ?? ""]);
        fc.pre(!same);
        Object.assign(sidecar, change);
        expect(judge(out, native).map((r) => r.reason)).toContain("NotInjected");
        if ("image" in change)
          expect(podUpdateRefusals(out, before).map((r) => r.reason)).toEqual(["SidecarImageChanged"]);
      }),
      { numRuns: 200 },
    );
  });
});
