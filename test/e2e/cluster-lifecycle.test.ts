import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { CLUSTER_DIR_PREFIX } from "../../src/dev/cluster.ts";
import { KUBELET_SYSCTLS } from "../../src/dev/cluster-config.ts";
import {
  mountsUnder,
  otherLiveClusters,
  readSysctls,
  reapStaleClusters,
} from "../../src/dev/cluster-system.ts";
import { pidsMentioning } from "../../src/dev/controlplane-process.ts";
import { e2eTarget } from "./support/target.ts";

const { unavailable } = e2eTarget();
const SCRIPT = new URL("../../scripts/cluster.ts", import.meta.url).pathname;

interface Leftovers {
  netns: boolean;
  processes: number;
  mounts: number;
  cgroups: string[];
  dir: boolean;
}

function leftovers(dir: string, netns: string, cgroupRoot: string): Leftovers {
  const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  return {
    netns: namespaces.split("\n").some((line) => line.split(" ")[0] === netns),
    processes: pidsMentioning(dir).length,
    mounts: mountsUnder(dir, readFileSync("/proc/self/mountinfo", "utf8")).length,
    cgroups: ["memory", "cpu", "pids", "systemd", "unified"].filter((h) =>
      existsSync(join("/sys/fs/cgroup", h, cgroupRoot)),
    ),
    dir: existsSync(dir),
  };
}

// A run killed with SIGKILL runs no exit hook: the next start must find and undo everything it left.
describe.skipIf(unavailable !== undefined)("a cluster whose process was killed", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("leaves processes, mounts, cgroups and its network namespace, and the next start reaps them all", async () => {
    child = spawn(process.execPath, [SCRIPT], { stdio: ["ignore", "pipe", "pipe"] });
    const kubeconfig = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child?.stdout as NodeJS.ReadableStream }).on("line", (line) => {
        if (line.startsWith("kubeconfig: ")) resolve(line.slice("kubeconfig: ".length));
      });
      child?.on("exit", (code) => reject(new Error(`the cluster exited early (${code})`)));
    });
    // The kubeconfig is in the control plane's directory, inside the cluster's.
    const dir = dirname(dirname(kubeconfig));
    const record = JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as {
      netns: string;
      cgroupRoot: string;
      sysctls: Record<string, string>;
    };
    const exited = new Promise((resolve) => child?.on("exit", resolve));
    child.kill("SIGKILL");
    await exited;

    const left = leftovers(dir, record.netns, record.cgroupRoot);
    expect(left.netns).toBe(true);
    expect(left.processes).toBeGreaterThan(0);
    expect(left.mounts).toBeGreaterThan(0);
    expect(left.cgroups.length).toBeGreaterThan(0);

    // With another cluster running (this run's own), the kernel settings are that cluster's to restore.
    const othersAlive = otherLiveClusters(dir).length > 0;
    const sysctlsBeforeReaping = readSysctls();
    expect(reapStaleClusters(tmpdir(), CLUSTER_DIR_PREFIX)).toContain(dir);
    expect(leftovers(dir, record.netns, record.cgroupRoot)).toEqual({
      netns: false,
      processes: 0,
      mounts: 0,
      cgroups: [],
      dir: false,
    });
    const after = readSysctls();
    const expected = othersAlive ? sysctlsBeforeReaping : record.sysctls;
    for (const key of KUBELET_SYSCTLS) expect(after[key], key).toBe(expected[key]);
    console.log(
      `proved: a SIGKILLed cluster left ${left.processes} processes, ${left.mounts} mounts, cgroups in ${left.cgroups.length} hierarchies and network namespace ${record.netns}; reaping removed all of them${othersAlive ? " (the kernel settings stay with the cluster still running)" : ` and restored ${KUBELET_SYSCTLS.length} kernel settings`}`,
    );
  });
});
