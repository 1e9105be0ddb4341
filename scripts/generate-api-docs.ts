import { readFileSync, writeFileSync } from "node:fs";
import { crdSchema, fieldReference } from "./api-codegen.ts";
import { BLUEPRINT_CRD_PATH, CRD_PATH } from "./generate-api-types.ts";

/**
 * Regenerates the field references in docs/agentidentity.md and docs/agentidentityblueprint.md between
 * their markers: `npx node scripts/generate-api-docs.ts`.
 */
export const DOC_PATH = new URL("../docs/agentidentity.md", import.meta.url);
export const BLUEPRINT_DOC_PATH = new URL("../docs/agentidentityblueprint.md", import.meta.url);
const BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE (scripts/generate-api-docs.ts) -->";
const END = "<!-- END GENERATED FIELD REFERENCE -->";

/** The documents with a generated reference, each with the CRD it is generated from. */
export const DOCUMENTED: ReadonlyArray<{ doc: URL; crd: URL }> = [
  { doc: DOC_PATH, crd: CRD_PATH },
  { doc: BLUEPRINT_DOC_PATH, crd: BLUEPRINT_CRD_PATH },
];

export function renderFieldReference(crd: URL = CRD_PATH): string {
  const root = crdSchema(readFileSync(crd, "utf8"));
  return [
    BEGIN,
    "",
    "### spec",
    "",
    fieldReference(root.properties?.spec ?? {}, "spec"),
    "",
    "### status",
    "",
    fieldReference(root.properties?.status ?? {}, "status"),
    "",
    END,
  ].join("\n");
}

/** The generated block as it stands in the document. */
export function documentedFieldReference(doc: string): string | undefined {
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  return start >= 0 && end > start ? doc.slice(start, end + END.length) : undefined;
}

if (import.meta.main) {
  for (const { doc: path, crd } of DOCUMENTED) {
    const doc = readFileSync(path, "utf8");
    const current = documentedFieldReference(doc);
    if (!current) throw new Error(`${path.pathname} has no generated-reference markers`);
    writeFileSync(path, doc.replace(current, renderFieldReference(crd)));
    console.log(`updated ${path.pathname}`);
  }
}
