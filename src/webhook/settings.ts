import type { KubeClient } from "../kube/client.ts";
import { SIDECAR_TUNING } from "../sidecar/tuning.ts";
import { deepFrozen } from "./json-text.ts";
import type { Resources, SidecarSettings } from "./types.ts";

/**
 * The manager's sidecar settings (flags) and the native-sidecar decision. Defaults are small: the sidecar
 * idles near 50 MB and peaked at 77–78 MB under load (docs/sidecar.md), so 96Mi requested and 160Mi as a
 * limit leave room without reserving much. CPU is requested low and limited at one core: the sidecar
 * needs about 0.2 s of CPU from its start to ready, which the app's start waits for, and a quota of half
 * a core stretched that to 0.54–0.92 s against a median of 0.33 s with one core (docs/cluster.md,
 * "Start-up and pod start times"). Once started, it uses little CPU.
 */

export const DEFAULT_RESOURCES: Resources = {
  requests: { cpu: "25m", memory: "96Mi" },
  limits: { cpu: "1", memory: "160Mi" },
};

/**
 * Where Node and `agentid` live in the sidecar image (the Dockerfile's `sidecar` target: a scratch image,
 * so no PATH lookup; the command is absolute).
 */
export const DEFAULT_NODE = "/usr/local/bin/node";
export const DEFAULT_ENTRYPOINT = "/app/dist/cli.js";
export const DEFAULT_RUN_AS_USER = 65532;

export type NativeSidecarMode = "auto" | "on" | "off";

/**
 * Native sidecars (init containers with restartPolicy Always) are on by default from Kubernetes 1.29
 * (beta, SidecarContainers feature gate) and GA in 1.33. `auto` trusts the API server's version; a
 * cluster whose kubelets are older than its API server should say `off`.
 */
export function nativeSidecarsFromVersion(version: {
  major?: string;
  minor?: string;
  gitVersion?: string;
}): boolean {
  const fromGit = /^v?(\d+)\.(\d+)/.exec(version.gitVersion ?? "");
  const major = Number.parseInt(fromGit?.[1] ?? version.major ?? "", 10);
  const minor = Number.parseInt(fromGit?.[2] ?? version.minor ?? "", 10);
  if (!Number.isFinite(major) || !Number.isFinite(minor)) return false;
  return major > 1 || (major === 1 && minor >= 29);
}

export async function detectNativeSidecars(kube: KubeClient, mode: NativeSidecarMode): Promise<boolean> {
  if (mode !== "auto") return mode === "on";
  const version = await kube.get<{ major?: string; minor?: string; gitVersion?: string }>("/version");
  return nativeSidecarsFromVersion(version);
}

export interface SidecarFlags {
  image: string;
  imagePullPolicy?: SidecarSettings["imagePullPolicy"];
  native: boolean;
  node?: string;
  entrypoint?: string;
  defaultResources?: Resources;
}

/** Frozen (copies of the shared defaults): the mutation memoises what it renders per settings object (memo.ts). */
export function sidecarSettings(flags: SidecarFlags): SidecarSettings {
  return deepFrozen({
    image: flags.image,
    ...(flags.imagePullPolicy ? { imagePullPolicy: flags.imagePullPolicy } : {}),
    native: flags.native,
    node: flags.node ?? DEFAULT_NODE,
    entrypoint: flags.entrypoint ?? DEFAULT_ENTRYPOINT,
    nodeFlags: [...SIDECAR_TUNING.flags],
    nodeEnv: { ...SIDECAR_TUNING.env },
    defaultResources: structuredClone(flags.defaultResources ?? DEFAULT_RESOURCES),
    runAsUser: DEFAULT_RUN_AS_USER,
  });
}
