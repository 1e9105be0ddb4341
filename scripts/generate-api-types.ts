import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { crdSchema, generateTypes } from "./api-codegen.ts";

/** Regenerates src/api/types.generated.ts from the CRDs: `npx node scripts/generate-api-types.ts`. */
export const CRD_PATH = new URL("../crds/agentid.io_agentidentities.yaml", import.meta.url);
export const BLUEPRINT_CRD_PATH = new URL("../crds/agentid.io_agentidentityblueprints.yaml", import.meta.url);
export const GENERATED_PATH = new URL("../src/api/types.generated.ts", import.meta.url);
const BIOME = new URL("../node_modules/.bin/biome", import.meta.url).pathname;

/** The generated module exactly as committed: generated from the CRDs, then formatted by the project's Biome. */
export function renderGeneratedTypes(): string {
  const source = generateTypes(
    [
      { kind: "AgentIdentityBlueprint", root: crdSchema(readFileSync(BLUEPRINT_CRD_PATH, "utf8")) },
      { kind: "AgentIdentity", root: crdSchema(readFileSync(CRD_PATH, "utf8")) },
    ],
    ["crds/agentid.io_agentidentityblueprints.yaml", "crds/agentid.io_agentidentities.yaml"],
  );
  return execFileSync(BIOME, ["format", "--stdin-file-path=src/api/types.generated.ts"], {
    input: source,
    encoding: "utf8",
  });
}

if (import.meta.main) {
  writeFileSync(GENERATED_PATH, renderGeneratedTypes());
  console.log(`wrote ${GENERATED_PATH.pathname}`);
}
