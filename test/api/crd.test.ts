import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { crdSchema, type JsonSchema } from "../../scripts/api-codegen.ts";
import {
  DOCUMENTED,
  documentedFieldReference,
  renderFieldReference,
} from "../../scripts/generate-api-docs.ts";
import {
  BLUEPRINT_CRD_PATH,
  CRD_PATH,
  GENERATED_PATH,
  renderGeneratedTypes,
} from "../../scripts/generate-api-types.ts";
import {
  BLUEPRINT_KIND,
  BLUEPRINT_PLURAL,
  BLUEPRINT_SHORT_NAMES,
  GROUP,
  KIND,
  PLURAL,
  SHORT_NAMES,
  VERSION,
} from "../../src/api/constants.ts";

interface Crd {
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames: string[] };
    versions: Array<{
      name: string;
      subresources?: { status?: object };
      additionalPrinterColumns: Array<{ name: string; jsonPath: string; priority?: number }>;
    }>;
  };
}

const CRDS = [
  { path: CRD_PATH, kind: KIND, plural: PLURAL, shortNames: SHORT_NAMES, scope: "Namespaced" },
  {
    path: BLUEPRINT_CRD_PATH,
    kind: BLUEPRINT_KIND,
    plural: BLUEPRINT_PLURAL,
    shortNames: BLUEPRINT_SHORT_NAMES,
    scope: "Cluster",
  },
];

/** Every property path under spec and status, with its schema. */
function walk(schema: JsonSchema, path: string, out: Array<[string, JsonSchema]>): void {
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    out.push([`${path}.${name}`, child]);
    walk(child, `${path}.${name}`, out);
  }
  if (typeof schema.additionalProperties === "object") {
    out.push([`${path}[*]`, schema.additionalProperties]);
    walk(schema.additionalProperties, `${path}[*]`, out);
  }
  if (schema.items) {
    out.push([`${path}[]`, schema.items]);
    walk(schema.items, `${path}[]`, out);
  }
}

it("generates exactly the committed TypeScript types (run `npx node scripts/generate-api-types.ts` after a CRD change)", () => {
  expect(readFileSync(GENERATED_PATH, "utf8")).toBe(renderGeneratedTypes());
});

it.each(DOCUMENTED.map((d) => [d.doc.pathname.split("/").pop(), d] as const))(
  "%s documents every field (run `npx node scripts/generate-api-docs.ts` after a CRD change)",
  (_name, { doc, crd }) => {
    expect(documentedFieldReference(readFileSync(doc, "utf8"))).toBe(renderFieldReference(crd));
  },
);

describe.each(CRDS)("the $kind CRD", ({ path, kind, plural, shortNames, scope }) => {
  const text = readFileSync(path, "utf8");
  const crd = parse(text) as Crd;

  it("describes every field under spec and status, so kubectl explain teaches the model", () => {
    const root = crdSchema(text);
    const fields: Array<[string, JsonSchema]> = [];
    walk(root.properties?.spec ?? {}, "spec", fields);
    walk(root.properties?.status ?? {}, "status", fields);
    expect(fields.length).toBeGreaterThan(30);
    const undescribed = fields
      .filter(([, s]) => !s.description || s.description.trim().length < 5)
      .map(([p]) => p);
    expect(undescribed).toEqual([]);
  });

  it("uses the fixed names (group, kinds, plurals, short names)", () => {
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.scope).toBe(scope);
    expect(crd.spec.names.kind).toBe(kind);
    expect(crd.spec.names.plural).toBe(plural);
    expect(crd.spec.names.shortNames).toEqual(shortNames);
    expect(crd.spec.versions.map((v) => v.name)).toEqual([VERSION]);
  });

  it("has a status subresource, a Ready reason column and the Ready message under -o wide", () => {
    const version = crd.spec.versions[0];
    expect(version?.subresources?.status).toEqual({});
    const columns = version?.additionalPrinterColumns ?? [];
    expect(columns.find((c) => c.name === "Reason")?.jsonPath).toBe(
      '.status.conditions[?(@.type=="Ready")].reason',
    );
    const message = columns.find((c) => c.name === "Message");
    expect(message?.jsonPath).toBe('.status.conditions[?(@.type=="Ready")].message');
    expect(message?.priority).toBe(1);
  });

  it("shapes conditions exactly as metav1.Condition", () => {
    const root = crdSchema(text);
    const item = root.properties?.status?.properties?.conditions?.items as JsonSchema & {
      properties: Record<
        string,
        JsonSchema & { pattern?: string; minLength?: number; minimum?: number; format?: string }
      >;
    };
    expect(item.required?.sort()).toEqual(["lastTransitionTime", "message", "reason", "status", "type"]);
    expect(item.properties.type?.pattern).toContain("[A-Za-z0-9][-A-Za-z0-9_.]*");
    expect(item.properties.reason?.pattern).toBe("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$");
    expect(item.properties.reason?.minLength).toBe(1);
    expect(item.properties.observedGeneration?.minimum).toBe(0);
    expect(item.properties.lastTransitionTime?.format).toBe("date-time");
  });
});

it("keys downstreamApis by name as a list map (Kubernetes API conventions)", () => {
  const root = crdSchema(readFileSync(CRD_PATH, "utf8"));
  const apis = root.properties?.spec?.properties?.downstreamApis as JsonSchema & {
    "x-kubernetes-list-type"?: string;
  };
  expect(apis.type).toBe("array");
  expect(apis["x-kubernetes-list-type"]).toBe("map");
  expect(apis["x-kubernetes-list-map-keys"]).toEqual(["name"]);
});
