import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { DirectoryError, type DirectorySpec } from "./directory.ts";
import { normalizeDirectory } from "./directory-validate.ts";

/** Reads a directory from a YAML or JSON file (JSON is YAML), checked and normalized. */
export async function loadDirectoryFile(path: string): Promise<DirectorySpec> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new DirectoryError(
      `cannot read directory file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new DirectoryError(`${path} is not valid YAML/JSON: ${(error as Error).message.split("\n")[0]}`);
  }
  try {
    return normalizeDirectory(parsed);
  } catch (error) {
    throw new DirectoryError(`${path}: ${(error as Error).message}`);
  }
}
