import { readFileSync, writeFileSync } from "node:fs";
import { crdSchema, fieldReference } from "./api-codegen.ts";
import { CRD_PATH } from "./generate-api-types.ts";

/** Regenerates the field reference in docs/agentidentity.md between its markers: `npx node scripts/generate-api-docs.ts`. */
export const DOC_PATH = new URL("../docs/agentidentity.md", import.meta.url);
const BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE (scripts/generate-api-docs.ts) -->";
const END = "<!-- END GENERATED FIELD REFERENCE -->";

export function renderFieldReference(): string {
  const root = crdSchema(readFileSync(CRD_PATH, "utf8"));
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
  const doc = readFileSync(DOC_PATH, "utf8");
  const current = documentedFieldReference(doc);
  if (!current) throw new Error(`${DOC_PATH.pathname} has no generated-reference markers`);
  writeFileSync(DOC_PATH, doc.replace(current, renderFieldReference()));
  console.log(`updated ${DOC_PATH.pathname}`);
}
