import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { crdSchema, type JsonSchema } from "../../scripts/api-codegen.ts";
import { DOC_PATH, documentedFieldReference, renderFieldReference } from "../../scripts/generate-api-docs.ts";
import { CRD_PATH, GENERATED_PATH, renderGeneratedTypes } from "../../scripts/generate-api-types.ts";
import { GROUP, KIND, PLURAL, SHORT_NAMES, VERSION } from "../../src/api/constants.ts";

const crdText = readFileSync(CRD_PATH, "utf8");
const crd = parse(crdText) as {
  spec: {
    group: string;
    names: { kind: string; plural: string; shortNames: string[] };
    versions: Array<{
      name: string;
      subresources?: { status?: object };
      additionalPrinterColumns: Array<{ name: string; jsonPath: string }>;
    }>;
  };
};

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

describe("the AgentIdentity CRD", () => {
  it("generates exactly the committed TypeScript types (run `npx node scripts/generate-api-types.ts` after a CRD change)", () => {
    expect(readFileSync(GENERATED_PATH, "utf8")).toBe(renderGeneratedTypes());
  });

  it("describes every field under spec and status, so kubectl explain teaches the model", () => {
    const root = crdSchema(crdText);
    const fields: Array<[string, JsonSchema]> = [];
    walk(root.properties?.spec ?? {}, "spec", fields);
    walk(root.properties?.status ?? {}, "status", fields);
    expect(fields.length).toBeGreaterThan(50);
    const undescribed = fields
      .filter(([, s]) => !s.description || s.description.trim().length < 5)
      .map(([p]) => p);
    expect(undescribed).toEqual([]);
  });

  it("is documented field by field in docs/agentidentity.md (run `npx node scripts/generate-api-docs.ts` after a CRD change)", () => {
    const documented = documentedFieldReference(readFileSync(DOC_PATH, "utf8"));
    expect(documented).toBe(renderFieldReference());
    expect(documented).toContain("`spec.downstreamApis.<name>.requestAppToken`");
    expect(documented).toContain("`status.conditions[].observedGeneration`");
  });

  it("uses the names fixed in src/api/constants.ts", () => {
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.names.kind).toBe(KIND);
    expect(crd.spec.names.plural).toBe(PLURAL);
    expect(crd.spec.names.shortNames).toEqual(SHORT_NAMES);
    expect(crd.spec.versions.map((v) => v.name)).toEqual([VERSION]);
  });

  it("has a status subresource and the printer columns Ready, Verified, Agent, ServiceAccount, Age", () => {
    const version = crd.spec.versions[0];
    expect(version?.subresources?.status).toEqual({});
    expect(version?.additionalPrinterColumns.map((c) => c.name)).toEqual([
      "Ready",
      "Verified",
      "Agent",
      "ServiceAccount",
      "Age",
    ]);
  });

  it("carries a CEL rule with a message for exactly one credential and for app-token scopes", () => {
    expect(crdText).toContain(
      "blueprint.credential must set exactly one of workloadIdentity, managedIdentity or clientSecret",
    );
    expect(crdText).toContain("an API with requestAppToken true needs exactly one scope ending in /.default");
  });
});
