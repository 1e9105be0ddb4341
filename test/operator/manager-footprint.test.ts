import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { MANAGER_SEMI_SPACE_FLAG, REEXEC_MARKER, reexecArgs } from "../../src/manager/v8-flags.ts";

const cli = new URL("../../src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "manager-footprint-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("reexecArgs", () => {
  const base = { execPath: "/node", execArgv: [], argv: ["/node", "/app/cli.js", "manager", "--x"], env: {} };

  it("adds the semi-space flag before the script and keeps node flags and arguments", () => {
    expect(reexecArgs({ ...base, execArgv: ["--enable-source-maps"] })).toEqual([
      "/node",
      MANAGER_SEMI_SPACE_FLAG,
      "--enable-source-maps",
      "/app/cli.js",
      "manager",
      "--x",
    ]);
  });

  it.each([
    ["a node flag", { execArgv: ["--max-semi-space-size=2"] }],
    ["a node flag with a separate value", { execArgv: ["--max-semi-space-size", "2"] }],
    ["NODE_OPTIONS", { env: { NODE_OPTIONS: "--inspect --max_semi_space_size=32" } }],
    ["an earlier re-execution", { env: { [REEXEC_MARKER]: "1" } }],
  ])("leaves the process alone when %s sets the young generation", (_, override) => {
    expect(reexecArgs({ ...base, ...override })).toBeUndefined();
  });
});

/**
 * Runs `agentid manager` until it fails on its configuration, and reports what it loaded: in a "pod"
 * whose API server address is not a URL, or with a kubeconfig whose server is not a URL.
 */
function runManager(
  env: Record<string, string>,
  from: "in-cluster" | "kubeconfig" = "in-cluster",
): Promise<{ code: number; stderr: string; report: Report }> {
  const hooks = join(dir, "hooks.mjs");
  writeFileSync(
    hooks,
    `import { registerHooks } from "node:module";
const packages = new Set();
registerHooks({ load(url, context, next) {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(url);
  if (m) packages.add(m[1]);
  return next(url, context);
} });
process.on("exit", () => process.stderr.write("REPORT " + JSON.stringify({
  pid: process.pid, execArgv: process.execArgv, reexec: process.env.${REEXEC_MARKER} ?? null, packages: [...packages],
}) + "\\n"));
`,
  );
  const kubeconfig = join(dir, "kubeconfig.yaml");
  writeFileSync(
    kubeconfig,
    stringify({
      clusters: [{ name: "c", cluster: { server: "not a url" } }],
      users: [{ name: "u", user: { token: "t" } }],
      contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      "current-context": "x",
    }),
  );
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", hooks, cli, "manager", ...(from === "kubeconfig" ? ["--kubeconfig", kubeconfig] : [])],
      {
        env: {
          ...process.env,
          ...env,
          KUBECONFIG: "",
          // In a pod: the service's address (not a URL here, so that the manager stops at its first request).
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: "not-a-port",
          [REEXEC_MARKER]: "",
        },
      },
      (error, _stdout, stderr) => {
        const line = stderr.split("\n").find((l) => l.startsWith("REPORT "));
        // Rejected, not thrown: a throw here would be an uncaught exception, not this test's failure.
        if (!line) {
          reject(new Error(`the manager printed no report: ${stderr}`));
          return;
        }
        try {
          const report = JSON.parse(line.slice(7)) as Report;
          resolve({ code: error ? Number(error.code) : 0, stderr, report });
        } catch (parseError) {
          reject(parseError);
        }
      },
    );
  });
}

interface Report {
  pid: number;
  execArgv: string[];
  reexec: string | null;
  packages: string[];
}

describe("agentid manager process", () => {
  it("re-executes itself with a bounded young generation and, in a pod, never loads @kubernetes/client-node", async () => {
    const { code, stderr, report } = await runManager({ NODE_OPTIONS: "" });
    // No ServiceAccount files on this machine, or (in a pod) an address that is not a URL.
    expect(stderr).toMatch(/no ServiceAccount token|Invalid URL/);
    expect(code).toBe(1);
    expect(report.execArgv).toContain(MANAGER_SEMI_SPACE_FLAG);
    expect(report.reexec).toBe("1");
    // The manager's own dependencies were loaded (so the list is real), the heavy client was not.
    expect(report.packages).toContain("pino");
    expect(report.packages).not.toContain("@kubernetes/client-node");
  });

  it("loads @kubernetes/client-node only for a kubeconfig file", async () => {
    const { code, stderr, report } = await runManager({ NODE_OPTIONS: "" }, "kubeconfig");
    expect(stderr).toMatch(/is not a URL: 'not a url'/);
    expect(code).toBe(1);
    expect(report.packages).toContain("@kubernetes/client-node");
  });

  it("runs as it is when NODE_OPTIONS sets the young generation", async () => {
    const { code, report } = await runManager({ NODE_OPTIONS: "--max-semi-space-size=4" });
    expect(code).toBe(1);
    expect(report.execArgv).not.toContain(MANAGER_SEMI_SPACE_FLAG);
    expect(report.reexec).toBe("");
  });
});
