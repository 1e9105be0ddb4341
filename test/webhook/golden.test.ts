import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import jsonpatch, { type Operation } from "fast-json-patch";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createLogger } from "../../src/lib/log.ts";
import type { AdmissionRequest } from "../../src/webhook/admission.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import type { Refusal } from "../../src/webhook/refusals.ts";
import { createReviewer } from "../../src/webhook/review.ts";
import { resolveTarget } from "../../src/webhook/target.ts";
import type { SidecarSettings } from "../../src/webhook/types.ts";
import { settings as testSettings } from "./support.ts";

/**
 * Golden fixtures (test/fixtures/webhook/<case>/): `input.yaml` (a pod, or `base:` another case's result
 * plus `change:` JSON-Patch operations, e.g. what a later webhook added) → `patch.json` and `pod.yaml`, or
 * `refusal.txt`. The whole review runs: selection, blueprint and namespace checks, rendering, mutation.
 * Regenerate after an intended change with `UPDATE_GOLDEN=1 npx vitest run test/webhook/golden.test.ts`
 * and read the diff.
 */

const ROOT = new URL("../fixtures/webhook/", import.meta.url);
const UPDATE = process.env.UPDATE_GOLDEN === "1";

interface Input {
  pod?: JsonObject;
  base?: string;
  change?: Operation[];
  operation?: "CREATE" | "UPDATE";
  subResource?: string;
  objects?: string;
  settings?: Partial<SidecarSettings>;
}

interface Objects {
  identities: AgentIdentity[];
  blueprints: AgentIdentityBlueprint[];
  namespaces: Array<{ metadata: { name: string; labels?: Record<string, string> } }>;
}

function loadObjects(variant: string | undefined): Objects {
  const file = variant ? `objects-${variant}.yaml` : "objects.yaml";
  const docs = parseAllDocuments(readFileSync(new URL(file, ROOT), "utf8")).map((d) => d.toJSON());
  return {
    identities: docs.filter((d) => d.kind === "AgentIdentity"),
    blueprints: docs.filter((d) => d.kind === "AgentIdentityBlueprint"),
    namespaces: docs.filter((d) => d.kind === "Namespace"),
  };
}

/** One refusal Event the reviewer asked for (what index.ts hands to the event recorder). */
interface RecordedEvent {
  identity: AgentIdentity;
  refusals: readonly Refusal[];
}

/** The cache and the API server hold the same objects here (no race in these cases). */
function reviewerFor(objects: Objects, settings: SidecarSettings, events: RecordedEvent[]) {
  const inNs = (ns: string) => objects.identities.filter((i) => i.metadata.namespace === ns);
  return createReviewer({
    identities: {
      cached: (ns, name) => inNs(ns).find((i) => i.metadata.name === name),
      cachedList: inNs,
      read: async (ns, name) => inNs(ns).find((i) => i.metadata.name === name),
      list: async (ns) => inNs(ns),
    },
    recordRefusal: (identity, refusals) => events.push({ identity, refusals }),
    resolve: async (identity, namespace) =>
      resolveTarget({
        identity,
        blueprint: objects.blueprints.find((b) => b.metadata.name === identity.spec.blueprintRef.name),
        namespace: {
          name: namespace,
          labels: objects.namespaces.find((n) => n.metadata.name === namespace)?.metadata.labels ?? {},
        },
        allowedAuthorityHosts: [],
      }),
    settings: () => settings,
    logger: createLogger({ name: "golden", level: "silent" }),
  });
}

/**
 * Refused cases with no AgentIdentity to record an Event on: none exists, or (an ephemeral container) the
 * pod's mark naming it was removed, so only the log line and the metric report the refusal.
 */
const NO_IDENTITY = ["refuse-identity-missing", "refuse-ephemeral-container-relabelled"];

const cases = readdirSync(ROOT, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

function readInput(name: string): Input {
  return parse(readFileSync(new URL(`${name}/input.yaml`, ROOT), "utf8")) as Input;
}

/** Cases whose input builds on another's result come after it (matters when regenerating). */
const ordered = [...cases].sort(
  (a, b) => Number(readInput(a).base !== undefined) - Number(readInput(b).base !== undefined),
);

function resultPod(name: string): JsonObject {
  return parse(readFileSync(new URL(`${name}/pod.yaml`, ROOT), "utf8")) as JsonObject;
}

/** Compares parsed content (the files may be reformatted by Biome); writes the file when regenerating. */
function check(name: string, file: string, actual: string): void {
  const url = new URL(`${name}/${file}`, ROOT);
  if (UPDATE) {
    writeFileSync(url, actual);
    return;
  }
  expect(existsSync(url), `${name}/${file} is missing; run with UPDATE_GOLDEN=1 and review it`).toBe(true);
  const expected = readFileSync(url, "utf8");
  if (file.endsWith(".txt")) expect(actual).toBe(expected);
  else expect(parse(actual)).toEqual(parse(expected));
}

describe("golden fixtures", () => {
  it("has a case for everything issue 11 lists", () => {
    for (const required of [
      "single-container",
      "several-containers",
      "existing-init-containers",
      "users-native-sidecar",
      "deployment-pod-without-name",
      "existing-sidecar-url",
      "resource-overrides",
      "reinvocation",
      "idempotence",
      "ephemeral-container-allowed",
      "refuse-ephemeral-container-token",
    ]) {
      expect(cases).toContain(required);
    }
    expect(cases.filter((c) => c.startsWith("refuse-")).length).toBeGreaterThanOrEqual(12);
  });

  for (const name of ordered) {
    it(name, async () => {
      const input = readInput(name);
      const basePod = input.base ? resultPod(input.base) : undefined;
      const before = basePod ?? input.pod;
      if (!before) throw new Error(`${name}: input.yaml needs pod or base`);
      const object = input.change
        ? jsonpatch.applyPatch(structuredClone(before), input.change, true, false).newDocument
        : structuredClone(before);
      const operation = input.operation ?? "CREATE";
      const request: AdmissionRequest = {
        uid: `uid-${name}`,
        operation,
        namespace: "research",
        resource: "pods",
        subResource: input.subResource ?? "",
        object,
        oldObject: operation === "UPDATE" ? before : undefined,
        dryRun: false,
        user: "alice@contoso.com",
      };
      const events: RecordedEvent[] = [];
      const review = reviewerFor(loadObjects(input.objects), testSettings(input.settings ?? {}), events);
      const { response } = await review(request);
      const refused = name.startsWith("refuse-");
      expect(response.allowed, `${name}: ${response.status?.message ?? ""}`).toBe(!refused);
      if (!response.allowed) {
        check(name, "refusal.txt", `${response.status?.message ?? ""}\n`);
        // Every refusal that concerns an identity is an Event on it, once, saying what the answer says.
        if (NO_IDENTITY.includes(name)) expect(events).toEqual([]);
        else {
          expect(events).toHaveLength(1);
          expect(events[0]?.identity.metadata.name).toBe("research-agent");
          expect(`agentid: ${events[0]?.refusals.map((r) => r.message).join("; ")}`).toBe(
            response.status?.message,
          );
        }
        return;
      }
      expect(events).toEqual([]);
      const patch = response.patch
        ? (JSON.parse(Buffer.from(response.patch, "base64").toString()) as Operation[])
        : [];
      check(name, "patch.json", `${JSON.stringify(patch, null, 2)}\n`);
      const after = jsonpatch.applyPatch(structuredClone(object), patch, true, false).newDocument;
      check(name, "pod.yaml", stringify(after, { lineWidth: 0 }));
    });
  }
});
