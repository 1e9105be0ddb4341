import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  cacheRoot,
  goModGoLine,
  goModRequire,
  KUBE_APISERVER_MODULE,
  kubeApiserverVersionFromOutput,
} from "./controlplane-binaries.ts";
import {
  type BuildContext,
  ControlPlaneBuildError,
  findOrBuild,
  isExecutable,
} from "./controlplane-build.ts";
import { type BinarySpec, goVersion, kubernetesGoArgs } from "./controlplane-go.ts";

/**
 * The cluster's own binaries, built like the control plane's and into the same cache: kubelet,
 * kube-controller-manager and kube-scheduler from tools/node (the same k8s.io/kubernetes version as
 * tools/controlplane/kube-apiserver), and the sandbox ("pause") program from tools/pause.
 */

export const NODE_TOOLS_DIR = fileURLToPath(new URL("../../tools/node/", import.meta.url));
export const PAUSE_TOOLS_DIR = fileURLToPath(new URL("../../tools/pause/", import.meta.url));

export const CLUSTER_FIRST_BUILD_HINT =
  "the first build of kubelet takes 7-11 minutes on 2 cores with a cold Go cache; the controller-manager and scheduler then reuse most of it";

export interface ClusterBinaries {
  kubelet: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  pause: string;
  source: Record<"kubelet" | "kubeControllerManager" | "kubeScheduler" | "pause", string>;
}

type Key = keyof ClusterBinaries["source"];

/** The environment variable that may name a prebuilt binary, envtest style. */
export const CLUSTER_BINARY_ENV: Record<Key, { env: string; file: string }> = {
  kubelet: { env: "TEST_ASSET_KUBELET", file: "kubelet" },
  kubeControllerManager: { env: "TEST_ASSET_KUBE_CONTROLLER_MANAGER", file: "kube-controller-manager" },
  kubeScheduler: { env: "TEST_ASSET_KUBE_SCHEDULER", file: "kube-scheduler" },
  pause: { env: "TEST_ASSET_PAUSE", file: "pause" },
};

/** Paths the environment names: TEST_ASSET_<NAME>, else AGENTID_CLUSTER_ASSETS/<file>. Pure. */
export function clusterBinariesFromEnvironment(env: NodeJS.ProcessEnv): Partial<Record<Key, string>> {
  const found: Partial<Record<Key, string>> = {};
  for (const [key, { env: name, file }] of Object.entries(CLUSTER_BINARY_ENV) as [
    Key,
    { env: string; file: string },
  ][]) {
    const direct = env[name];
    if (direct) found[key] = direct;
    else if (env.AGENTID_CLUSTER_ASSETS) found[key] = join(env.AGENTID_CLUSTER_ASSETS, file);
  }
  return found;
}

export function clusterBinarySpecs(k8s: string): Record<Key, BinarySpec> {
  const kube = (name: string, pkg: string): BinarySpec => ({
    name,
    moduleDir: NODE_TOOLS_DIR,
    version: k8s,
    goArgs: (output) => kubernetesGoArgs(k8s, pkg, output),
    versionOf: kubeApiserverVersionFromOutput,
    buildHint: CLUSTER_FIRST_BUILD_HINT,
  });
  return {
    kubelet: kube("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
    kubeControllerManager: kube("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    kubeScheduler: kube("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    pause: {
      name: "pause",
      moduleDir: PAUSE_TOOLS_DIR,
      version: "1",
      goArgs: (output) => ["build", "-trimpath", "-ldflags", "-s -w", "-o", output, "."],
      versionOf: (output) => /agentid pause (\d+)/.exec(output)?.[1],
      buildHint: "a few seconds",
    },
  };
}

export interface EnsureClusterBinariesOptions {
  env?: NodeJS.ProcessEnv;
  cacheDir?: string;
  force?: boolean;
  progress?: (line: string) => void;
}

/** Finds or builds kubelet, kube-controller-manager, kube-scheduler and pause (kubelet first: the long one). */
export async function ensureClusterBinaries(
  options: EnsureClusterBinariesOptions = {},
): Promise<ClusterBinaries> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`[cluster] ${line}\n`));
  const { readFile } = await import("node:fs/promises");
  const goMod = await readFile(join(NODE_TOOLS_DIR, "go.mod"), "utf8");
  const k8s = goModRequire(goMod, KUBE_APISERVER_MODULE);
  if (!k8s) throw new ControlPlaneBuildError(`tools/node/go.mod does not require ${KUBE_APISERVER_MODULE}`);
  const fromEnv = clusterBinariesFromEnvironment(env);
  const ctx: BuildContext = {
    env,
    dir: join(options.cacheDir ?? cacheRoot(env), k8s),
    go: await goVersion(env),
    goMinimum: goModGoLine(goMod) ?? "1.24.0",
    force: options.force === true,
    progress,
  };
  const specs = clusterBinarySpecs(k8s);
  const result: Partial<ClusterBinaries> = {};
  const source: Partial<ClusterBinaries["source"]> = {};
  for (const key of ["kubelet", "kubeControllerManager", "kubeScheduler", "pause"] as const) {
    const given = fromEnv[key];
    if (given !== undefined) {
      if (!(await isExecutable(given))) {
        throw new ControlPlaneBuildError(
          `${CLUSTER_BINARY_ENV[key].env} names ${given}, which is not executable`,
        );
      }
      result[key] = given;
      source[key] = "environment";
      continue;
    }
    const built = await findOrBuild(specs[key], ctx);
    result[key] = built.path;
    source[key] = built.source;
  }
  return { ...(result as Omit<ClusterBinaries, "source">), source: source as ClusterBinaries["source"] };
}
