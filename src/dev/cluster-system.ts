import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { CLUSTER_NETWORK, KUBELET_SYSCTLS } from "./cluster-config.ts";
import { ownedDirs, pidsMentioning } from "./controlplane-process.ts";

const execFileAsync = promisify(execFile);

/**
 * The machine-wide side effects of a cluster, and undoing them: the network namespace, mounts, cgroups,
 * kernel settings and /var/lib/kubelet. Everything is recorded in `<dir>/cluster.json` before it is made, so a
 * killed run is reaped by the next start just as `stop()` would have done it.
 */

export interface ClusterRecord {
  /** The process that owns the cluster; when it is dead, the cluster is a leftover. */
  pid: number;
  netns: string;
  cgroupRoot: string;
  /** Kernel settings as they were before kubelet changed them. */
  sysctls: Record<string, string>;
  /** Whether /var/lib/kubelet existed before (kubelet writes device-plugins/ there whatever --root-dir says). */
  varLibKubeletExisted: boolean;
}

export function writeRecord(dir: string, record: ClusterRecord): void {
  writeFileSync(join(dir, "cluster.json"), `${JSON.stringify(record, null, 2)}\n`);
}

function readRecord(dir: string): ClusterRecord | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as ClusterRecord;
  } catch {
    return undefined;
  }
}

async function run(command: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(command, args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`${command} ${args.join(" ")} failed: ${stderr.trim() || (error as Error).message}`);
  }
}

/** The command line that runs `binary` inside the namespace: only the network namespace changes, so mounts made
 * by kubelet are seen by containerd and runc (`ip netns exec` would also give each a mount namespace of its own). */
export function inNetns(netns: string, binary: string, args: string[]): [string, string[]] {
  return ["nsenter", [`--net=/run/netns/${netns}`, "--", binary, ...args]];
}

/** Creates the namespace with loopback up, the pods' bridge with the node address, and the `kubernetes` Service route. */
export async function createNetns(netns: string): Promise<void> {
  await run("ip", ["netns", "add", netns]);
  const ip = (...args: string[]) => run("ip", ["-n", netns, ...args]);
  await ip("link", "set", "lo", "up");
  await ip("link", "add", CLUSTER_NETWORK.bridge, "type", "bridge");
  await ip("addr", "add", `${CLUSTER_NETWORK.gateway}/24`, "dev", CLUSTER_NETWORK.bridge);
  await ip("link", "set", CLUSTER_NETWORK.bridge, "up");
  // No kube-proxy: pods reach the API server's Service IP through one DNAT rule, inside the namespace only.
  const [cmd, args] = inNetns(netns, "iptables", [
    "-t",
    "nat",
    "-A",
    "PREROUTING",
    "-d",
    `${CLUSTER_NETWORK.kubernetesServiceIp}/32`,
    "-p",
    "tcp",
    "--dport",
    "443",
    "-j",
    "DNAT",
    "--to-destination",
    `${CLUSTER_NETWORK.gateway}:6443`,
  ]);
  await run(cmd, args);
}

/** Mount points at or under `dir`, deepest first; pure (reads the text of /proc/self/mountinfo). */
export function mountsUnder(dir: string, mountinfo: string): string[] {
  const unescapeOctal = (s: string) =>
    s.replace(/\\(\d{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const points = mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeOctal)
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function unmountUnder(dir: string): void {
  for (let round = 0; round < 5; round++) {
    const points = mountsUnder(dir, readFileSync("/proc/self/mountinfo", "utf8"));
    if (points.length === 0) return;
    for (const point of points) {
      try {
        execFileSync("umount", ["-l", point], { stdio: "ignore" });
      } catch {
        // Already gone with its parent.
      }
    }
  }
}

function cgroupHierarchies(): string[] {
  const base = "/sys/fs/cgroup";
  if (existsSync(join(base, "cgroup.controllers"))) return [base];
  return readdirSync(base).map((h) => join(base, h));
}

/**
 * Makes the cluster's cgroup in every hierarchy (kubelet refuses a cgroupRoot that is missing anywhere). A new
 * v1 cpuset cgroup starts with no CPUs and no memory nodes, so it gets its parent's.
 */
export function createCgroups(cgroupRoot: string): void {
  for (const hierarchy of cgroupHierarchies()) {
    const dir = join(hierarchy, cgroupRoot);
    mkdirSync(dir, { recursive: true });
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      if (existsSync(join(dir, file)))
        writeFileSync(join(dir, file), readFileSync(join(hierarchy, file), "utf8").trim());
    }
  }
}

/** Every hierarchy under /sys/fs/cgroup that has our cgroup root (v1 controllers and the unified one). */
function cgroupDirs(cgroupRoot: string): string[] {
  const dirs: string[] = [];
  for (const hierarchy of cgroupHierarchies()) {
    const dir = join(hierarchy, cgroupRoot);
    if (existsSync(dir)) dirs.push(dir);
  }
  return dirs;
}

function processesIn(cgroupDir: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string) => {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) {
        if (/^\d+$/.test(line)) pids.push(Number(line));
      }
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(dir, entry.name));
      }
    } catch {
      // Removed while we looked.
    }
  };
  walk(cgroupDir);
  return pids;
}

function removeCgroupTree(dir: string): void {
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
    }
    rmdirSync(dir);
  } catch {
    // Busy for a moment after its last process died; the caller retries.
  }
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function kill(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Kills every process of the cluster's pods and removes its cgroups in every hierarchy. */
export function removeCgroups(cgroupRoot: string): void {
  for (let round = 0; round < 20; round++) {
    const dirs = cgroupDirs(cgroupRoot);
    if (dirs.length === 0) return;
    for (const dir of dirs) kill(processesIn(dir));
    for (const dir of dirs) removeCgroupTree(dir);
    sleepSync(100);
  }
}

export function readSysctls(): Record<string, string> {
  const values: Record<string, string> = {};
  for (const key of KUBELET_SYSCTLS) {
    try {
      values[key] = readFileSync(join("/proc/sys", key), "utf8").trim();
    } catch {
      // Not on this kernel.
    }
  }
  return values;
}

export function restoreSysctls(values: Record<string, string>): void {
  for (const [key, value] of Object.entries(values)) {
    try {
      if (readFileSync(join("/proc/sys", key), "utf8").trim() !== value)
        writeFileSync(join("/proc/sys", key), value);
    } catch {
      // Best effort: the next start tries again from the record.
    }
  }
}

/**
 * Records of the other clusters alive beside `dir` (their owner runs). Several clusters may run at once (test
 * runs of different worktrees): machine-wide settings are restored only by the last one to stop, and a new one
 * takes the kernel settings as they were before the first one changed them.
 */
export function otherLiveClusters(dir: string): ClusterRecord[] {
  const prefix = basename(dir).replace(/[^-]*$/, "");
  return ownedDirs(dirname(dir), prefix, readRecord, true)
    .filter((other) => other.dir !== dir)
    .map((other) => other.owner);
}

/** Kernel settings as they were before any cluster changed them. */
export function originalSysctls(dir: string): Record<string, string> {
  return otherLiveClusters(dir)[0]?.sysctls ?? readSysctls();
}

/** Undoes everything a cluster made, in an order that never leaves a busy mount or cgroup behind. Synchronous, so
 * it also runs from a process-exit hook. */
export function teardown(dir: string, record: ClusterRecord): void {
  // Pods first (their processes are in our cgroups), then every process started with our directory on its
  // command line (nsenter'd components, containerd's shims, the relay).
  removeCgroups(record.cgroupRoot);
  kill(pidsMentioning(dir));
  sleepSync(200);
  kill(pidsMentioning(dir));
  unmountUnder(dir);
  removeCgroups(record.cgroupRoot);
  try {
    execFileSync("ip", ["netns", "delete", record.netns], { stdio: "ignore" });
  } catch {
    // Not made yet, or already gone.
  }
  // Machine-wide state is shared with any other cluster still running: the last one restores it.
  if (otherLiveClusters(dir).length === 0) {
    restoreSysctls(record.sysctls);
    rmSync("/var/lib/kubelet/device-plugins/kubelet.sock", { force: true });
    if (!record.varLibKubeletExisted) rmSync("/var/lib/kubelet", { recursive: true, force: true });
  }
  // containerd's shims keep their sockets in /run/containerd/s whatever its state directory is.
  for (const path of ["/run/containerd/s", "/run/containerd"]) {
    try {
      rmdirSync(path);
    } catch {
      // Not empty (another containerd) or absent.
    }
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/** Clusters left behind by killed runs: directories with `prefix` whose owner is dead. Returns what it removed. */
export function reapStaleClusters(root: string, prefix: string): string[] {
  const reaped: string[] = [];
  for (const { dir, owner } of ownedDirs(root, prefix, readRecord, false)) {
    teardown(dir, owner);
    reaped.push(dir);
  }
  return reaped;
}
