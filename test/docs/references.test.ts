import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Docs must not name files that do not exist: every relative link, and every repository path written
 * in backticks, in README.md and docs/*.md must resolve to something in the repository.
 */
const root = new URL("../..", import.meta.url).pathname;
const tracked = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
  cwd: root,
  encoding: "utf8",
})
  .split("\n")
  .filter(Boolean);
const docs = tracked.filter((f) => f === "README.md" || (f.startsWith("docs/") && f.endsWith(".md")));
const topLevel = new Set(tracked.map((f) => f.split("/")[0]));
/** In the repository (a file, or a folder holding one), not merely on this disk (a build output, say). */
const inRepo = (path: string) => {
  const clean = path.replace(/\/$/, "");
  return tracked.includes(clean) || tracked.some((f) => f.startsWith(`${clean}/`));
};
/** Made by a build or a run, never committed: named by the docs on purpose. */
const GENERATED = ["dist/", "node_modules/", ".cache/"];
/** File types a backticked token without a known top-level folder is still taken as a path for. */
const PATH_LIKE = /\.(ts|js|md|json|ya?ml|go|mod|sum|sh|pem)$/;

/** The repository paths a text names in backticks (candidates only; see `isRepoPath`). */
function backtickedPaths(text: string): string[] {
  // Fenced code blocks hold commands and examples, not references.
  const prose = text.replace(/^```[\s\S]*?^```/gm, "");
  // A command in backticks (`npx node scripts/x.ts`) names its paths too: every word is a candidate.
  return [...prose.matchAll(/`([^`]+)`/g)]
    .flatMap((m) => (m[1] ?? "").split(/\s+/))
    .map((word) => word.replace(/:\d+(-\d+)?$/, ""));
}

function isRepoPath(token: string): boolean {
  if (!token.includes("/") || /[*<>{}$~?=&]|:\/\/|^[@/]|^\.\.?\/|^[a-z]+:/.test(token)) return false;
  if (GENERATED.some((g) => token.startsWith(g))) return false;
  return topLevel.has(token.split("/")[0] ?? "") || PATH_LIKE.test(token);
}

/** Relative link targets: the file (empty for the same document) and the #anchor, if any. */
function relativeLinks(text: string): Array<{ file: string; anchor: string | undefined }> {
  const prose = text.replace(/^```[\s\S]*?^```/gm, "");
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1] ?? "")
    .filter((target) => !/^[a-z]+:/.test(target))
    .map((target) => {
      const [file = "", anchor] = target.split("#");
      return { file, anchor };
    });
}

/** The anchors GitHub makes for a document's headings. */
function headingAnchors(text: string): Set<string> {
  const prose = text.replace(/^```[\s\S]*?^```/gm, "");
  return new Set(
    [...prose.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      (m[1] ?? "")
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, "")
        .replace(/ /g, "-"),
    ),
  );
}

describe("references in README.md and docs/", () => {
  it("finds the documents to check", () => {
    expect(docs).toContain("README.md");
    expect(docs.length).toBeGreaterThan(3);
  });

  it("tells a path from other backticked text", () => {
    const found = backtickedPaths(
      "`src/cli.ts` `src/kube/queue.ts:12` `notes/x.md` `@azure/msal-node` `/healthz` `agentid.io/identity` `https://a/b` `test/**` `dist/cli.js` `npx node\n  scripts/gen.ts`\n```sh\nnode src/absent.ts\n```",
    ).filter(isRepoPath);
    expect(found).toEqual(["src/cli.ts", "src/kube/queue.ts", "notes/x.md", "scripts/gen.ts"]);
  });

  it("lists every document of docs/ in the README's Documentation section", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Documentation"));
    const unlisted = docs.filter((d) => d.startsWith("docs/") && !section.includes(`\`${d}\``));
    expect(unlisted).toEqual([]);
  });

  it("makes heading anchors as GitHub does", () => {
    expect([
      ...headingAnchors(
        "# Memory and speed\n## Configuration without client-node\n### `agentid manager`: flags\n",
      ),
    ]).toEqual(["memory-and-speed", "configuration-without-client-node", "agentid-manager-flags"]);
  });

  it.each(docs)("%s names only files (and headings) that exist", (doc) => {
    const text = readFileSync(join(root, doc), "utf8");
    const missing = [
      ...relativeLinks(text).flatMap(({ file, anchor }) => {
        const path = file ? relative(root, join(root, dirname(doc), decodeURIComponent(file))) : doc;
        if (!inRepo(path)) return [`link ${path}`];
        if (anchor === undefined || !path.endsWith(".md")) return [];
        const anchors = headingAnchors(readFileSync(join(root, path), "utf8"));
        return anchors.has(anchor) ? [] : [`link ${path}#${anchor} (no such heading)`];
      }),
      ...backtickedPaths(text)
        .filter(isRepoPath)
        .filter((path) => !inRepo(path))
        .map((path) => `\`${path}\``),
    ];
    expect(missing).toEqual([]);
  });
});
