import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/**
 * What the cluster needs from the machine, and installing it on Debian when running as root. Pure decisions
 * first (`missingRequirements`), I/O after.
 */

/** Debian packages and the commands the harness calls from each. */
export const CLUSTER_PACKAGES: Record<string, string[]> = {
  containerd: ["containerd", "ctr"],
  runc: ["runc"],
  "containernetworking-plugins": ["/usr/lib/cni/bridge", "/usr/lib/cni/host-local"],
  buildah: ["buildah"],
  // The shell and tools of the base image that stands in for node:24-slim (Dockerfile RUN lines need them).
  "busybox-static": ["/bin/busybox"],
  // ip, nsenter, iptables: present on every Debian, named so that a minimal image says what is missing.
  iproute2: ["ip"],
  "util-linux": ["nsenter"],
  iptables: ["iptables"],
};

export const CNI_BIN_DIR = "/usr/lib/cni";

export interface MachineFacts {
  platform: NodeJS.Platform;
  uid: number | undefined;
  isDebian: boolean;
  /** Which of the commands/paths of CLUSTER_PACKAGES exist. */
  has: (command: string) => boolean;
}

export type Requirements =
  | { ok: true }
  | { ok: false; reason: "not-linux" | "not-root"; message: string }
  | { ok: false; reason: "packages"; packages: string[]; canInstall: boolean; message: string };

/** The one line `npm test` prints when the cluster cannot run here. */
export function missingRequirements(facts: MachineFacts): Requirements {
  if (facts.platform !== "linux") {
    return {
      ok: false,
      reason: "not-linux",
      message: `the local cluster needs Linux (this is ${facts.platform}); run \`npm run e2e:kind\` where Docker and kind exist`,
    };
  }
  if (facts.uid !== 0) {
    return {
      ok: false,
      reason: "not-root",
      message:
        "the local cluster needs root (network namespace, containerd, kubelet); run `sudo npm run e2e`, or `npm run e2e:kind` where Docker and kind exist",
    };
  }
  const packages = Object.entries(CLUSTER_PACKAGES)
    .filter(([, commands]) => commands.some((c) => !facts.has(c)))
    .map(([name]) => name);
  if (packages.length === 0) return { ok: true };
  return {
    ok: false,
    reason: "packages",
    packages,
    canInstall: facts.isDebian,
    message: facts.isDebian
      ? `installing Debian packages for the local cluster: ${packages.join(" ")}`
      : `the local cluster needs ${packages.join(", ")} (Debian package names; install them with your package manager)`,
  };
}

function onPath(command: string): boolean {
  if (command.startsWith("/")) return existsSync(command);
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return dirs.some((d) => d && existsSync(`${d}/${command}`));
}

export function machineFacts(): MachineFacts {
  let isDebian = false;
  try {
    isDebian =
      /^ID=debian$/m.test(readFileSync("/etc/os-release", "utf8")) || existsSync("/etc/debian_version");
  } catch {
    isDebian = false;
  }
  return { platform: process.platform, uid: process.getuid?.(), isDebian, has: onPath };
}

export class ClusterRequirementError extends Error {
  override name = "ClusterRequirementError";
}

/** Checks the machine; installs missing Debian packages as root on Debian (printing their names). */
export async function ensureClusterPackages(progress: (line: string) => void): Promise<void> {
  const state = missingRequirements(machineFacts());
  if (state.ok) return;
  if (state.reason !== "packages" || !state.canInstall) throw new ClusterRequirementError(state.message);
  progress(state.message);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    execFileAsync("apt-get", ["install", "-y", "--no-install-recommends", ...state.packages], {
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
  try {
    await install();
  } catch {
    // A fresh machine may have no package lists yet.
    await execFileAsync("apt-get", ["update"], { env, maxBuffer: 64 * 1024 * 1024 });
    await install();
  }
  const after = missingRequirements(machineFacts());
  if (!after.ok) throw new ClusterRequirementError(`still missing after apt-get install: ${after.message}`);
}
