import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { MANAGER_TUNING, managerTuningWarning } from "../../src/manager/v8-flags.ts";

const cli = new URL("../../src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "manager-footprint-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("managerTuningWarning", () => {
  it("names the missing flags and the start command", () => {
    const warning = managerTuningWarning({ execArgv: [], env: {} });
    for (const flag of MANAGER_TUNING.flags) expect(warning).toContain(flag);
    expect(warning).toMatch(/cli\.js manager/);
  });

  it("says nothing when the start command carries the flags, in any spelling", () => {
    expect(managerTuningWarning({ execArgv: [...MANAGER_TUNING.flags], env: {} })).toBeUndefined();
    expect(
      managerTuningWarning({
        execArgv: MANAGER_TUNING.flags.map((f) => f.replaceAll("-", "_").replace(/^__/, "--")),
        env: {},
      }),
    ).toBeUndefined();
  });
});

describe("the manager image", () => {
  it("starts the manager with its flags (the Dockerfile's manager ENTRYPOINT)", () => {
    const dockerfile = readFileSync(new URL("../../Dockerfile", import.meta.url), "utf8");
    const target = dockerfile.slice(dockerfile.indexOf("AS manager"));
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(target)?.[1];
    expect(entrypoint).toBeDefined();
    expect(JSON.parse(entrypoint ?? "[]")).toEqual([
      "/usr/local/bin/node",
      ...MANAGER_TUNING.flags,
      "/app/dist/cli.js",
    ]);
  });
});

/**
 * Runs `agentid manager` until it fails on its configuration, and reports what it loaded: in a "pod"
 * whose API server address is not a URL, or with a kubeconfig whose server is not a URL.
 */
function runManager(
  env: Record<string, string>,
  from: "in-cluster" | "kubeconfig" = "in-cluster",
): Promise<{ code: number; stdout: string; stderr: string; report: Report }> {
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
  pid: process.pid, execArgv: process.execArgv, packages: [...packages],
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
        },
      },
      (error, stdout, stderr) => {
        const line = stderr.split("\n").find((l) => l.startsWith("REPORT "));
        // Rejected, not thrown: a throw here would be an uncaught exception, not this test's failure.
        if (!line) {
          reject(new Error(`the manager printed no report: ${stderr}`));
          return;
        }
        try {
          const report = JSON.parse(line.slice(7)) as Report;
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr, report });
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
  packages: string[];
}

describe("agentid manager process", () => {
  it("started without its flags, says so and runs on in the same process; in a pod it never loads @kubernetes/client-node", async () => {
    const { code, stdout, stderr, report } = await runManager({ NODE_OPTIONS: "" });
    expect(stdout).toContain(`started without ${MANAGER_TUNING.flags.join(" ")}`);
    // No ServiceAccount files on this machine, or (in a pod) an address that is not a URL.
    expect(stderr).toMatch(/no ServiceAccount token|Invalid URL/);
    expect(code).toBe(1);
    // Not re-executed: the process kept the node flags it was started with, and no others.
    expect(report.execArgv).toEqual(["--import", expect.stringMatching(/hooks\.mjs$/)]);
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
});
