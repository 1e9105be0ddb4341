import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Pure decisions about the control-plane binaries: which versions the Go wrapper modules pin, which Go is
 * new enough, where the cache lives and whether the environment points at binaries already (envtest style).
 */

export const KUBE_APISERVER_MODULE = "k8s.io/kubernetes";
export const ETCD_MODULE = "go.etcd.io/etcd/server/v3";

export interface WrapperVersions {
  /** k8s.io/kubernetes version, e.g. "v1.34.4". */
  kubernetes: string;
  /** go.etcd.io/etcd/server/v3 version, e.g. "v3.6.8". */
  etcd: string;
  /** The oldest Go both wrapper modules accept: the higher of their `go` lines, e.g. "1.24.0". */
  goMinimum: string;
}

/** The version a go.mod requires for a module, from a `require` line or block; undefined when absent. */
export function goModRequire(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const match = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod);
  return match?.[1];
}

/** The `go` directive of a go.mod, e.g. "1.24.0"; undefined when absent. */
export function goModGoLine(goMod: string): string | undefined {
  return /^go\s+(\d+\.\d+(?:\.\d+)?)\s*$/m.exec(goMod)?.[1];
}

/** Parses "go1.26.8", "1.24", "go1.25rc1" into numbers; undefined for anything else (e.g. "devel"). */
export function parseGoVersion(text: string): [number, number, number] | undefined {
  const match = /^(?:go)?(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim());
  if (!match) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
}

/** Negative when a < b, zero when equal, positive when a > b. Unparseable versions sort first. */
export function compareGoVersions(a: string, b: string): number {
  const pa = parseGoVersion(a);
  const pb = parseGoVersion(b);
  if (!pa || !pb) return (pa ? 1 : 0) - (pb ? 1 : 0);
  for (let i = 0; i < 3; i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

export function wrapperVersions(kubeApiserverGoMod: string, etcdGoMod: string): WrapperVersions {
  const kubernetes = goModRequire(kubeApiserverGoMod, KUBE_APISERVER_MODULE);
  const etcd = goModRequire(etcdGoMod, ETCD_MODULE);
  const goLines = [goModGoLine(kubeApiserverGoMod), goModGoLine(etcdGoMod)];
  if (!kubernetes)
    throw new Error(`the kube-apiserver wrapper go.mod does not require ${KUBE_APISERVER_MODULE}`);
  if (!etcd) throw new Error(`the etcd wrapper go.mod does not require ${ETCD_MODULE}`);
  const goMinimum = goLines
    .filter((v): v is string => v !== undefined)
    .reduce((max, v) => (compareGoVersions(v, max) > 0 ? v : max), "1.0");
  return { kubernetes, etcd, goMinimum };
}

/** "Kubernetes v1.34.4" → "v1.34.4". */
export function kubeApiserverVersionFromOutput(output: string): string | undefined {
  return /Kubernetes\s+(v\d+\.\d+\.\d+\S*)/.exec(output)?.[1];
}

/** "etcd Version: 3.6.8" → "v3.6.8" (the module's spelling). */
export function etcdVersionFromOutput(output: string): string | undefined {
  const version = /etcd Version:\s*(\d+\.\d+\.\d+\S*)/.exec(output)?.[1];
  return version ? `v${version}` : undefined;
}

/**
 * Root of the build cache: AGENTID_CONTROLPLANE_CACHE, else $XDG_CACHE_HOME/agentid/controlplane,
 * else ~/.cache/agentid/controlplane. Always outside the repository.
 */
export function cacheRoot(env: NodeJS.ProcessEnv, home: string = homedir()): string {
  if (env.AGENTID_CONTROLPLANE_CACHE) return env.AGENTID_CONTROLPLANE_CACHE;
  const base = env.XDG_CACHE_HOME || join(home, ".cache");
  return join(base, "agentid", "controlplane");
}

/** Binary paths the environment names, the way controller-runtime's envtest reads them. */
export interface EnvironmentBinaries {
  kubeApiserver?: string;
  etcd?: string;
  /** Which variable each path came from, for messages. */
  origin: { kubeApiserver?: string; etcd?: string };
}

export function binariesFromEnvironment(env: NodeJS.ProcessEnv): EnvironmentBinaries {
  const result: EnvironmentBinaries = { origin: {} };
  const assets = env.KUBEBUILDER_ASSETS;
  if (env.TEST_ASSET_KUBE_APISERVER) {
    result.kubeApiserver = env.TEST_ASSET_KUBE_APISERVER;
    result.origin.kubeApiserver = "TEST_ASSET_KUBE_APISERVER";
  } else if (assets) {
    result.kubeApiserver = join(assets, "kube-apiserver");
    result.origin.kubeApiserver = "KUBEBUILDER_ASSETS";
  }
  if (env.TEST_ASSET_ETCD) {
    result.etcd = env.TEST_ASSET_ETCD;
    result.origin.etcd = "TEST_ASSET_ETCD";
  } else if (assets) {
    result.etcd = join(assets, "etcd");
    result.origin.etcd = "KUBEBUILDER_ASSETS";
  }
  return result;
}

/** What a cached binary was built from; a mismatch in any field means rebuild. */
export interface BuildStamp {
  /** kube-apiserver, etcd, or one of the cluster's binaries (kubelet, kube-scheduler, ...). */
  binary: string;
  version: string;
  go: string;
  /** sha256 of the wrapper module's go.mod and go.sum. */
  moduleHash: string;
}

/** `ignoreGo`: without a Go toolchain a cached binary of the right version is still good. */
export function stampMatches(
  found: unknown,
  wanted: BuildStamp,
  options: { ignoreGo?: boolean } = {},
): boolean {
  if (typeof found !== "object" || found === null) return false;
  const record = found as Record<string, unknown>;
  return (
    record.binary === wanted.binary &&
    record.version === wanted.version &&
    (options.ignoreGo === true || record.go === wanted.go) &&
    record.moduleHash === wanted.moduleHash
  );
}

/** "95s" → "1m35s"; for progress lines. */
export function formatElapsed(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
}
