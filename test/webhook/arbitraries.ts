import fc from "fast-check";
import { ANNOTATION_INJECTED } from "../../src/api/constants.ts";
import { SIDECAR_URL } from "../../src/webhook/mutate.ts";
import type { Json, JsonObject } from "../../src/webhook/raw.ts";

/** Arbitrary valid pods for the webhook's property tests (mutate.property.test.ts, guard.property.test.ts). */

export const SECRET = "agent-client-secret";
/** What injection adds to app containers (test/webhook/support.ts's target). */
export const INJECTED_APP_ENV = [SIDECAR_URL, "AGENTID_AGENT_ID"];
export const names = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
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

export const pod: fc.Arbitrary<JsonObject> = fc
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
