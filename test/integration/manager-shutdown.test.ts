import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { type ControlPlane, startControlPlane } from "../../src/dev/controlplane.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { managerCommand, parseDuration } from "../../src/manager/command.ts";
import { spawnManager } from "../support/child.ts";
import { apiServerAddress, createNamespace } from "./kube-support.ts";
import { startTcpProxy, type TcpProxy } from "./kube-tcp-proxy.ts";
import { ensureCrd } from "./operator-support.ts";

/**
 * `agentid manager` as a real process, stopped with SIGTERM: with its API server up it releases the
 * Lease and exits 0; with the API server gone (stopped, or reachable but silent) it still exits by itself
 * before its shutdown grace period ends, and when stopping outlasts the grace period it exits 1 with one
 * line naming what was pending. On a control plane of this file's own: one test stops its kube-apiserver.
 *
 * "Before the grace period ends" is read from the process, not from a clock: the grace timer is the only
 * path to exit code 1 and to the "shutdown grace period ... ended" line, so exit code 0 without that line
 * means the stop finished first. The wait for the exit is bounded by the grace period plus a generous
 * margin for a loaded machine, only so that a regression fails instead of hanging.
 */

/** The documented default (`agentid manager --help`), which these managers run with unless a test says. */
const GRACE = String(managerCommand.options["shutdown-grace-period"]?.default);
const EXIT_LIMIT_MS = parseDuration(GRACE, "shutdown-grace-period") + 20_000;

let cp: ControlPlane;
let kube: KubeClient;

beforeAll(async () => {
  cp = await startControlPlane({ progress: () => {} });
  await ensureCrd(cp.kubeConfig);
  kube = createKubeClient(cp.kubeConfig, { requestTimeoutMs: 5_000 });
}, 180_000);

afterAll(async () => {
  await kube?.close();
  await cp?.stop();
});

interface Lease {
  spec?: { holderIdentity?: string };
}

interface LogLine {
  level: number;
  msg?: string;
  pending?: string;
  gracePeriod?: string;
}

interface Manager {
  child: ChildProcess;
  exited: Promise<number | null>;
  lines(): LogLine[];
  stderr(): string;
}

/** A kubeconfig file that reaches the API server through a TCP relay on `port`. */
function kubeconfigVia(port: number): string {
  const { port: real } = apiServerAddress(cp.kubeConfig);
  const text = readFileSync(cp.kubeconfigPath, "utf8").replace(`127.0.0.1:${real}`, `127.0.0.1:${port}`);
  const path = join(cp.dir, `kubeconfig-via-${port}`);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

function startManager(kubeconfig: string, leaseNamespace: string, extra: string[] = []): Manager {
  const watched = spawnManager([
    "--kubeconfig",
    kubeconfig,
    "--lease-namespace",
    leaseNamespace,
    "--no-verify",
    "--metrics-bind-address",
    "0",
    ...extra,
  ]);
  return {
    child: watched.child,
    exited: watched.exited,
    lines: () => watched.jsonLines<LogLine>(),
    stderr: watched.stderr,
  };
}

async function holderOf(namespace: string): Promise<string> {
  const lease = await kube.getOptional<Lease>(
    `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/agentid-manager`,
  );
  return lease?.spec?.holderIdentity ?? "";
}

/** SIGTERM, then the exit code, or a failure naming the last log lines when it outlives the limit. */
async function terminate(manager: Manager): Promise<number | null> {
  manager.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<"alive">((resolve) => {
    timer = setTimeout(() => resolve("alive"), EXIT_LIMIT_MS);
  });
  const result = await Promise.race([manager.exited, limit]);
  clearTimeout(timer);
  if (result === "alive") {
    const tail = manager
      .lines()
      .slice(-5)
      .map((l) => l.msg)
      .join(" | ");
    throw new Error(
      `the manager was still running ${EXIT_LIMIT_MS} ms after SIGTERM; last log lines: ${tail}`,
    );
  }
  return result;
}

const graceEnded = (l: LogLine) => /shutdown grace period .* ended/.test(l.msg ?? "");

describe("agentid manager shutdown", { timeout: 120_000 }, () => {
  it("with the API server up: releases the Lease, drains and exits 0", async () => {
    const own = await createNamespace(kube, "shutdown-up");
    const manager = startManager(cp.kubeconfigPath, own);
    await expect.poll(() => holderOf(own), { message: "the manager to lead", timeout: 60_000 }).not.toBe("");

    expect(await terminate(manager), manager.stderr()).toBe(0);
    expect(await holderOf(own)).toBe("");
    const messages = manager.lines().map((l) => l.msg);
    expect(messages).toContain("leader-only components drained");
    expect(messages).toContain("released the lease");
    expect(messages).toContain("stopped");
    expect(manager.lines().some(graceEnded)).toBe(false);
    // It ran with the documented default.
    expect(manager.lines().find((l) => l.msg === "stopping: releasing the lease")?.gracePeriod).toBe(GRACE);
  });

  it("with the API server reachable but silent: one short release attempt, exits 0 before the grace period", async () => {
    const own = await createNamespace(kube, "shutdown-silent");
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy: TcpProxy = await startTcpProxy(host, port);
    onTestFinished(() => proxy.close());
    const manager = startManager(kubeconfigVia(proxy.port), own);
    await expect.poll(() => holderOf(own), { message: "the manager to lead", timeout: 60_000 }).not.toBe("");
    const holder = await holderOf(own);

    // Every open and later connection stops carrying bytes: requests neither fail nor finish.
    proxy.blackhole();
    expect(await terminate(manager), manager.stderr()).toBe(0);
    expect(manager.lines().some(graceEnded)).toBe(false);
    const lines = manager.lines();
    expect(lines.filter((l) => l.msg === "could not release the lease; it will expire instead")).toHaveLength(
      1,
    );
    expect(lines.map((l) => l.msg)).toContain("stopped");
    // The release never reached the API server: the Lease names the stopped manager until it expires.
    expect(await holderOf(own)).toBe(holder);
  });

  it("with the webhook on and the API server silent: the certificate upkeep drains at once, exits 0", async () => {
    const own = await createNamespace(kube, "shutdown-webhook");
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy: TcpProxy = await startTcpProxy(host, port);
    onTestFinished(() => proxy.close());
    const manager = startManager(kubeconfigVia(proxy.port), own, [
      "--sidecar-image",
      "ghcr.io/agentid/sidecar:shutdown-test",
      "--webhook-host",
      "127.0.0.1",
      "--webhook-port",
      "0",
      "--webhook-configuration",
      `agentid-webhook-${own}`,
      // The certificate upkeep's retry wait (5 s) used to outlast its step-down when the abort came
      // during a request: 5 s plus the 2 s release attempt does not fit in 6 s; the release alone does.
      "--shutdown-grace-period",
      "6s",
    ]);
    await expect.poll(() => holderOf(own), { message: "the manager to lead", timeout: 60_000 }).not.toBe("");
    await expect
      .poll(() => manager.lines().some((l) => l.msg === "admission server listening"), {
        message: "the admission server to listen",
      })
      .toBe(true);

    proxy.blackhole();
    expect(await terminate(manager), manager.stderr()).toBe(0);
    expect(manager.lines().some(graceEnded)).toBe(false);
    expect(manager.lines().map((l) => l.msg)).toContain("stopped");
  });

  it("when stopping outlasts the grace period: exits 1 with one line naming what was pending", async () => {
    const own = await createNamespace(kube, "shutdown-grace");
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy: TcpProxy = await startTcpProxy(host, port);
    onTestFinished(() => proxy.close());
    // The lease release waits up to its 2 s deadline on a silent API server: longer than this grace period.
    const manager = startManager(kubeconfigVia(proxy.port), own, ["--shutdown-grace-period", "300ms"]);
    await expect.poll(() => holderOf(own), { message: "the manager to lead", timeout: 60_000 }).not.toBe("");

    proxy.blackhole();
    expect(await terminate(manager)).toBe(1);
    const ended = manager.lines().filter(graceEnded);
    expect(ended).toHaveLength(1);
    expect(ended[0]?.gracePeriod).toBe("300ms");
    expect(ended[0]?.pending).toBe("stepping down and releasing the lease");
    expect(manager.lines().map((l) => l.msg)).not.toContain("stopped");
  });

  // Last: it stops this file's kube-apiserver for good.
  it("with the API server stopped: exits 0 before the grace period", async () => {
    const own = await createNamespace(kube, "shutdown-gone");
    const manager = startManager(cp.kubeconfigPath, own);
    await expect.poll(() => holderOf(own), { message: "the manager to lead", timeout: 60_000 }).not.toBe("");

    process.kill(cp.pids.kubeApiserver, "SIGKILL");
    // The manager has seen it go: its watches fail to reconnect.
    await expect
      .poll(() => manager.lines().some((l) => /ECONNREFUSED/.test(JSON.stringify(l))), {
        message: "the manager to notice the API server is gone",
      })
      .toBe(true);
    expect(await terminate(manager), manager.stderr()).toBe(0);
    expect(manager.lines().some(graceEnded)).toBe(false);
    const messages = manager.lines().map((l) => l.msg);
    expect(messages).toContain("could not release the lease; it will expire instead");
    expect(messages).toContain("stopped");
  });
});
