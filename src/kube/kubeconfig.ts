import { existsSync, readFileSync } from "node:fs";
import type { RequestOptions as HttpsRequestOptions } from "node:https";
import { isIPv6 } from "node:net";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

/**
 * Where the manager's Kubernetes credentials come from. In a pod (the production case) this module reads
 * the ServiceAccount's files itself: a few lines, no dependency. A kubeconfig file (`--kubeconfig`,
 * KUBECONFIG, ~/.kube/config: development and out-of-cluster runs) is loaded through
 * `@kubernetes/client-node`'s KubeConfig, imported only then, because its index loads every generated API
 * model (about 55 MB of resident memory) that an in-cluster manager has no use for.
 */

export class KubeconfigError extends Error {
  override name = "KubeconfigError";
}

/** The part of https.RequestOptions that a KubeConfig fills in. */
export type HttpsOptionsTarget = Pick<
  HttpsRequestOptions,
  "ca" | "cert" | "key" | "rejectUnauthorized" | "servername" | "headers" | "auth"
>;

/**
 * What the kube toolkit needs from a configuration. The in-cluster configuration below and client-node's
 * `KubeConfig` both satisfy it, so test harnesses pass the latter directly.
 */
export interface KubeConfigLike {
  getCurrentCluster(): { readonly server: string; readonly proxyUrl?: string } | null;
  /** Sets TLS material and fresh auth headers (tokens rotate: call it per request). */
  applyToHTTPSOptions(opts: HttpsOptionsTarget): Promise<void>;
}

/** A configuration plus the namespace it places us in (the pod's own, or the kubeconfig context's). */
export interface LoadedKubeConfig extends KubeConfigLike {
  readonly namespace: string | undefined;
}

const IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** client-go and client-node re-read a token file once a minute; the kubelet rotates well before expiry. */
const TOKEN_FILE_MAX_AGE_MS = 60_000;

/** Reads a token file at most once per `maxAgeMs` (and again after a failed read). */
export function tokenFileSource(
  path: string,
  options: { maxAgeMs?: number; now?: () => number; read?: (path: string) => string } = {},
): () => Promise<string> {
  const maxAge = options.maxAgeMs ?? TOKEN_FILE_MAX_AGE_MS;
  const now = options.now ?? Date.now;
  const read = options.read ?? ((p: string) => readFileSync(p, "utf8"));
  let cached: { token: string; at: number } | undefined;
  return async () => {
    if (!cached || now() - cached.at > maxAge) {
      let token: string;
      try {
        token = read(path).trim();
      } catch (error) {
        throw new KubeconfigError(`cannot read the token file ${path}: ${(error as Error).message}`);
      }
      if (!token) throw new KubeconfigError(`the token file ${path} is empty`);
      cached = { token, at: now() };
    }
    return cached.token;
  };
}

/** The pod's ServiceAccount credentials: the CA is read once, the token whenever it is a minute old. */
class InClusterConfig implements LoadedKubeConfig {
  readonly #cluster: { server: string };
  readonly #ca: Buffer;
  readonly #token: () => Promise<string>;
  readonly namespace: string | undefined;
  constructor(server: string, ca: Buffer, tokenFile: string, namespace: string | undefined) {
    this.namespace = namespace;
    this.#cluster = { server };
    this.#ca = ca;
    this.#token = tokenFileSource(tokenFile);
  }
  getCurrentCluster(): { server: string } {
    return this.#cluster;
  }
  async applyToHTTPSOptions(opts: HttpsOptionsTarget): Promise<void> {
    opts.ca = this.#ca;
    opts.headers = {
      ...(opts.headers as Record<string, string>),
      Authorization: `Bearer ${await this.#token()}`,
    };
  }
}

/** The pod's ServiceAccount credentials; `dir` is for tests. */
export function loadInClusterConfig(
  env: NodeJS.ProcessEnv = process.env,
  dir: string = IN_CLUSTER_DIR,
): LoadedKubeConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new KubeconfigError(
      "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
    );
  const tokenFile = join(dir, "token");
  if (!existsSync(tokenFile))
    throw new KubeconfigError(
      `not in a cluster: no ServiceAccount token at ${tokenFile} (automountServiceAccountToken?)`,
    );
  let ca: Buffer;
  try {
    ca = readFileSync(join(dir, "ca.crt"));
  } catch (error) {
    throw new KubeconfigError(
      `cannot read the cluster CA ${join(dir, "ca.crt")}: ${(error as Error).message}`,
    );
  }
  const namespaceFile = join(dir, "namespace");
  const namespace = existsSync(namespaceFile)
    ? readFileSync(namespaceFile, "utf8").trim() || undefined
    : undefined;
  return new InClusterConfig(
    `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    ca,
    tokenFile,
    namespace,
  );
}

/**
 * A kubeconfig file, or several joined by the path delimiter, through client-node (merged as its
 * `loadFromDefault` merges KUBECONFIG: the first file's current context; missing files after the first
 * are skipped, as kubectl does).
 */
export async function loadKubeconfigFile(paths: string): Promise<LoadedKubeConfig> {
  const { KubeConfig } = await import("@kubernetes/client-node");
  const files = paths.split(delimiter).filter((p, i) => p && (i === 0 || existsSync(p)));
  const kc = new KubeConfig();
  for (const [i, file] of files.entries()) {
    const next = i === 0 ? kc : new KubeConfig();
    try {
      next.loadFromFile(file);
    } catch (error) {
      throw new KubeconfigError(
        `cannot load the kubeconfig ${file}: ${(error as Error).message.split("\n")[0]}`,
      );
    }
    if (next === kc) continue;
    try {
      kc.mergeConfig(next, true);
    } catch (error) {
      // client-node refuses a name defined twice, where kubectl would keep the first.
      throw new KubeconfigError(`cannot merge the kubeconfig ${file}: ${(error as Error).message}`);
    }
  }
  const context = kc.getContextObject(kc.getCurrentContext());
  if (!context) throw new KubeconfigError(`${paths}: no current context`);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeconfigError(`${paths}: context '${context.name}' names no known cluster`);
  try {
    new URL(cluster.server);
  } catch {
    throw new KubeconfigError(
      `${paths}: the server of cluster '${cluster.name}' is not a URL: '${cluster.server}'`,
    );
  }
  return {
    namespace: context.namespace || undefined,
    getCurrentCluster: () => kc.getCurrentCluster(),
    applyToHTTPSOptions: (opts) => kc.applyToHTTPSOptions(opts),
  };
}

/**
 * The manager's rule: `--kubeconfig` / KUBECONFIG when given, else in-cluster credentials, else
 * ~/.kube/config (the order of controller-runtime).
 */
export async function loadKubeConfig(
  options: { kubeconfig?: string; env?: NodeJS.ProcessEnv; inClusterDir?: string; home?: string } = {},
): Promise<LoadedKubeConfig> {
  if (options.kubeconfig) return loadKubeconfigFile(options.kubeconfig);
  const env = options.env ?? process.env;
  if (env.KUBERNETES_SERVICE_HOST) return loadInClusterConfig(env, options.inClusterDir);
  const fallback = join(options.home ?? homedir(), ".kube", "config");
  if (existsSync(fallback)) return loadKubeconfigFile(fallback);
  throw new KubeconfigError(
    `no Kubernetes configuration: not in a cluster, no --kubeconfig or KUBECONFIG, and no ${fallback}`,
  );
}
