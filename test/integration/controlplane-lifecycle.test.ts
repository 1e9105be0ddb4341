import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, ControlPlaneStartError, startControlPlane } from "../../src/dev/controlplane.ts";
import { type ControlPlaneBinaries, ensureControlPlaneBinaries } from "../../src/dev/controlplane-build.ts";
import { createNamespace, createServiceAccountToken } from "../../src/dev/controlplane-helpers.ts";
import { pidsMentioning } from "../../src/dev/controlplane-process.ts";

/** These tests start their own control planes: they stop, crash and restart them on purpose. */

const HARNESS = fileURLToPath(new URL("../../src/dev/controlplane.ts", import.meta.url));
const quiet = () => {};
let binaries: ControlPlaneBinaries;
const scratch: string[] = [];

beforeAll(async () => {
  binaries = await ensureControlPlaneBinaries({ progress: quiet });
});
afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

/** Running and not a zombie (orphans may be reaped late when PID 1 is not an init). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function portAccepts(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Processes killed by an exit hook die asynchronously (a Go process's leader thread shows as a zombie while
 * its other threads still hold the sockets), so allow a few seconds before asserting that all is gone.
 */
async function expectGone(pids: number[], dir: string, urls: string[]) {
  const leftovers = async () => {
    const found: string[] = [];
    for (const pid of pids) if (isRunning(pid)) found.push(`process ${pid}`);
    if (existsSync(dir)) found.push(dir);
    for (const pid of pidsMentioning(dir)) found.push(`process ${pid} using ${dir}`);
    for (const url of urls) if (await portAccepts(url)) found.push(`${url} accepting connections`);
    return found;
  };
  await expect.poll(leftovers, { timeout: 10_000, interval: 200 }).toEqual([]);
}

/**
 * Runs a child Node process that starts a control plane under its own scratch directory (so that no other
 * test run's reaper can interfere), prints its pids and dir, then does `then`.
 */
async function childControlPlane(then: "exit" | "hang") {
  const dir = await mkdtemp(join(tmpdir(), "agentid-cp-child-"));
  scratch.push(dir);
  const script = join(dir, "child.ts");
  await writeFile(
    script,
    [
      `import { startControlPlane } from ${JSON.stringify(HARNESS)};`,
      `const cp = await startControlPlane({ progress: () => {}, tmpRoot: ${JSON.stringify(dir)} });`,
      "console.log(JSON.stringify({ pids: [cp.pids.etcd, cp.pids.kubeApiserver], dir: cp.dir, urls: [cp.server, cp.etcdUrl] }));",
      then === "exit" ? "process.exit(3);" : "setInterval(() => {}, 1000);",
    ].join("\n"),
  );
  const child = spawn(process.execPath, [script], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      KUBEBUILDER_ASSETS: "",
      TEST_ASSET_KUBE_APISERVER: binaries.kubeApiserver,
      TEST_ASSET_ETCD: binaries.etcd,
    },
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    void exited.then((code) => reject(new Error(`child exited (${code}) before starting a control plane`)));
  });
  const started = JSON.parse(line) as { pids: number[]; dir: string; urls: string[] };
  return { child, exited, tmpRoot: dir, ...started };
}

describe("control plane lifecycle", () => {
  it("stops cleanly: no processes, ports or files are left, and stop() can be called twice", async () => {
    const cp = await startControlPlane({ binaries, progress: quiet });
    const pids = [cp.pids.etcd, cp.pids.kubeApiserver];
    for (const pid of pids) expect(isRunning(pid)).toBe(true);
    expect(await portAccepts(cp.server)).toBe(true);
    expect(existsSync(cp.kubeconfigPath)).toBe(true);

    await cp.stop();
    await expectGone(pids, cp.dir, [cp.server, cp.etcdUrl]);
    await cp.stop();
  });

  it("reports a failed start with the log's path and last lines, and leaves nothing behind", async () => {
    const error = await startControlPlane({
      binaries,
      progress: quiet,
      apiserverArgs: { "no-such-flag": "1" },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ControlPlaneStartError);
    const message = (error as Error).message;
    expect(message).toContain("kube-apiserver exited while waiting for kube-apiserver /readyz");
    expect(message).toContain("unknown flag: --no-such-flag");
    const log = /last lines of (\S+kube-apiserver\.log)/.exec(message)?.[1];
    expect(log, message).toBeDefined();
    await expectGone([], dirname(dirname(log ?? "/")), []);
  });

  it("retries once with new ports when a port is taken, then reports the bind error", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = (blocker.address() as AddressInfo).port;
    const tmpRoot = await mkdtemp(join(tmpdir(), "agentid-cp-port-"));
    scratch.push(tmpRoot);
    const lines: string[] = [];
    try {
      // Forcing the taken port makes both attempts collide, so the retry is visible and the error is final.
      const error = await startControlPlane({
        binaries,
        tmpRoot,
        progress: (l) => lines.push(l),
        apiserverArgs: { "secure-port": String(taken) },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ControlPlaneStartError);
      expect((error as Error).message).toContain("address already in use");
      expect(lines.filter((l) => l.includes("retrying with new ports"))).toHaveLength(1);
      expect(readdirSync(tmpRoot)).toEqual([]);
      expect(pidsMentioning(tmpRoot)).toEqual([]);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("kills its processes and removes its files when the test process exits without stop()", async () => {
    const { exited, pids, dir, urls } = await childControlPlane("exit");
    expect(await exited).toBe(3);
    await expectGone(pids, dir, urls);
  });

  it("reaps a control plane whose owner was killed (SIGKILL skips exit hooks) on the next start", async () => {
    const { child, exited, pids, dir, urls, tmpRoot } = await childControlPlane("hang");
    child.kill("SIGKILL");
    await exited;
    // The orphans really are still there: this is the case the reaper exists for.
    for (const pid of pids) expect(isRunning(pid)).toBe(true);
    const lines: string[] = [];
    const next = await startControlPlane({ binaries, tmpRoot, progress: (l) => lines.push(l) });
    try {
      expect(lines.some((l) => l.includes(`left behind by a killed process: ${dir}`))).toBe(true);
      await expectGone(pids, dir, urls);
    } finally {
      await next.stop();
    }
  });
});

describe("envtest binaries via KUBEBUILDER_ASSETS", () => {
  let cp: ControlPlane | undefined;
  afterAll(() => cp?.stop());

  it("runs the whole flow from KUBEBUILDER_ASSETS, with no Go on PATH", async () => {
    const assets = await mkdtemp(join(tmpdir(), "agentid-kubebuilder-assets-"));
    scratch.push(assets);
    await symlink(binaries.kubeApiserver, join(assets, "kube-apiserver"));
    await symlink(binaries.etcd, join(assets, "etcd"));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KUBEBUILDER_ASSETS: assets,
      PATH: dirname(process.execPath),
    };
    delete env.TEST_ASSET_KUBE_APISERVER;
    delete env.TEST_ASSET_ETCD;

    const found = await ensureControlPlaneBinaries({ env, progress: quiet });
    expect(found.source).toEqual({ kubeApiserver: "KUBEBUILDER_ASSETS", etcd: "KUBEBUILDER_ASSETS" });

    cp = await startControlPlane({ env, progress: quiet });
    const argv0 = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
    expect(argv0(cp.pids.kubeApiserver)).toBe(join(assets, "kube-apiserver"));
    expect(argv0(cp.pids.etcd)).toBe(join(assets, "etcd"));

    await createNamespace(cp.kubeConfig, "assets-flow");
    const { token } = await createServiceAccountToken(cp.kubeConfig, {
      namespace: "assets-flow",
      serviceAccount: "agent",
      audience: "api://AzureADTokenExchange",
      expirationSeconds: 600,
    });
    expect(token.split(".")).toHaveLength(3);
    const agent = new Agent({ connect: { ca: cp.caPem } });
    try {
      const res = await request(`${cp.issuerUrl}/.well-known/openid-configuration`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as { issuer?: string }).issuer).toBe(cp.issuerUrl);
    } finally {
      await agent.close();
    }
  });

  it("names the variable when KUBEBUILDER_ASSETS points at a directory without the binaries", async () => {
    const empty = await mkdtemp(join(tmpdir(), "agentid-kubebuilder-empty-"));
    scratch.push(empty);
    await expect(
      ensureControlPlaneBinaries({ env: { KUBEBUILDER_ASSETS: empty }, progress: quiet }),
    ).rejects.toThrow(
      `KUBEBUILDER_ASSETS names ${join(empty, "kube-apiserver")}, which is not an executable file`,
    );
  });
});
