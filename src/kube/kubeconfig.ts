import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import type { RequestOptions as HttpsRequestOptions } from "node:https";
import { isIPv6 } from "node:net";
import { homedir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { scrubTokens } from "../lib/log.ts";
import {
  type ClusterSettings,
  type ExecSettings,
  KubeconfigError,
  type KubeconfigSelection,
  type Material,
  mergeKubeconfigs,
  parseKubeconfigDocument,
  selectContext,
  type UserSettings,
} from "./kubeconfig-parse.ts";

export { KubeconfigError } from "./kubeconfig-parse.ts";

/**
 * A light kubeconfig loader for the manager process. `@kubernetes/client-node`'s index loads every
 * generated API model (about 55 MB of resident memory) although we only need its KubeConfig; this module
 * covers what an operator meets: in-cluster ServiceAccount credentials (token re-read as the kubelet
 * rotates it), and kubeconfig files with client certificates, tokens, token files, basic auth and exec
 * credential plugins that return a token.
 */

/** The part of https.RequestOptions that a KubeConfig fills in. */
export type HttpsOptionsTarget = Pick<
  HttpsRequestOptions,
  "ca" | "cert" | "key" | "rejectUnauthorized" | "servername" | "headers" | "auth"
>;

/**
 * What the kube toolkit needs from a configuration. Both `LightKubeConfig` and client-node's `KubeConfig`
 * satisfy it, so test harnesses may keep passing the latter.
 */
export interface KubeConfigLike {
  getCurrentCluster(): { readonly server: string; readonly proxyUrl?: string } | null;
  /** Sets TLS material and fresh auth headers (tokens rotate: call it per request). */
  applyToHTTPSOptions(opts: HttpsOptionsTarget): Promise<void>;
}

/** A source of a bearer token that may change over time. */
type TokenSource = () => Promise<string | undefined>;

const IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** client-go and client-node re-read a token file once a minute; the kubelet rotates well before expiry. */
const TOKEN_FILE_MAX_AGE_MS = 60_000;

/** Reads a token file at most once per `maxAgeMs` (and again after a failed read). */
export function tokenFileSource(
  path: string,
  options: { maxAgeMs?: number; now?: () => number; read?: (path: string) => string } = {},
): TokenSource {
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

export type ExecRunner = (
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
) => Promise<{ stdout: string }>;

const runExec: ExecRunner = (command, args, env) =>
  new Promise((resolvePromise, reject) => {
    execFile(command, args, { env, timeout: 60_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) {
        // stderr of a credential plugin explains the failure (login needed, ...); scrubbed all the same.
        const detail = scrubTokens(String(stderr).trim().split("\n").slice(-3).join(" "));
        reject(new KubeconfigError(`exec credential plugin '${command}' failed: ${detail || error.message}`));
      } else resolvePromise({ stdout: String(stdout) });
    });
  });

/**
 * An exec credential plugin (client.authentication.k8s.io ExecCredential) that returns a token; cached
 * until its `expirationTimestamp` (for ever when it names none, as client-go does).
 */
export function execTokenSource(
  exec: ExecSettings,
  options: { run?: ExecRunner; now?: () => number } = {},
): TokenSource {
  const run = options.run ?? runExec;
  const now = options.now ?? Date.now;
  let cached: { token: string; expiresAt: number } | undefined;
  let pending: Promise<string> | undefined;
  const fetchToken = async (): Promise<string> => {
    const env = { ...process.env };
    for (const { name, value } of exec.env) env[name] = value;
    env.KUBERNETES_EXEC_INFO = JSON.stringify({
      apiVersion: exec.apiVersion,
      kind: "ExecCredential",
      spec: { interactive: false },
    });
    const { stdout } = await run(exec.command, exec.args, env);
    let status: unknown;
    try {
      status = (JSON.parse(stdout) as { status?: unknown }).status;
    } catch {
      throw new KubeconfigError(`exec credential plugin '${exec.command}' did not print an ExecCredential`);
    }
    const s = (typeof status === "object" && status !== null ? status : {}) as Record<string, unknown>;
    if (s.clientCertificateData !== undefined)
      throw new KubeconfigError(
        `exec credential plugin '${exec.command}' returned a client certificate, which agentid does not support (tokens only)`,
      );
    if (typeof s.token !== "string" || !s.token)
      throw new KubeconfigError(`exec credential plugin '${exec.command}' returned no token`);
    const expires =
      typeof s.expirationTimestamp === "string"
        ? Date.parse(s.expirationTimestamp)
        : Number.POSITIVE_INFINITY;
    cached = { token: s.token, expiresAt: Number.isNaN(expires) ? Number.POSITIVE_INFINITY : expires };
    return s.token;
  };
  return async () => {
    if (cached && now() < cached.expiresAt - 10_000) return cached.token;
    // Concurrent requests share one run of the plugin.
    pending ??= fetchToken().finally(() => {
      pending = undefined;
    });
    return pending;
  };
}

function readMaterial(m: Material | undefined, what: string): Buffer | undefined {
  if (!m) return undefined;
  if ("data" in m) return m.data;
  try {
    return readFileSync(m.file);
  } catch (error) {
    throw new KubeconfigError(`cannot read the ${what} ${m.file}: ${(error as Error).message}`);
  }
}

/** A resolved configuration: one cluster, one user. Certificates are read once, tokens per request. */
export class LightKubeConfig implements KubeConfigLike {
  readonly cluster: ClusterSettings;
  readonly namespace: string | undefined;
  readonly context: string;
  readonly #ca: Buffer | undefined;
  readonly #cert: Buffer | undefined;
  readonly #key: Buffer | undefined;
  readonly #token: TokenSource | undefined;
  readonly #basic: string | undefined;

  constructor(selection: KubeconfigSelection, options: { execRunner?: ExecRunner } = {}) {
    const user: UserSettings = selection.user;
    this.cluster = selection.cluster;
    this.namespace = selection.namespace;
    this.context = selection.context;
    this.#ca = readMaterial(selection.cluster.ca, "certificate authority");
    this.#cert = readMaterial(user.clientCertificate, "client certificate");
    this.#key = readMaterial(user.clientKey, "client key");
    if (user.token) {
      const token = user.token;
      this.#token = async () => token;
    } else if (user.tokenFile) this.#token = tokenFileSource(user.tokenFile);
    else if (user.exec)
      this.#token = execTokenSource(user.exec, options.execRunner ? { run: options.execRunner } : {});
    if (user.username !== undefined) this.#basic = `${user.username}:${user.password ?? ""}`;
  }

  getCurrentCluster(): { server: string; proxyUrl?: string } {
    return this.cluster;
  }

  async applyToHTTPSOptions(opts: HttpsOptionsTarget): Promise<void> {
    if (this.#ca) opts.ca = this.#ca;
    if (this.#cert) opts.cert = this.#cert;
    if (this.#key) opts.key = this.#key;
    if (this.cluster.insecureSkipTlsVerify) opts.rejectUnauthorized = false;
    if (this.cluster.tlsServerName) opts.servername = this.cluster.tlsServerName;
    const token = await this.#token?.();
    if (token)
      opts.headers = { ...(opts.headers as Record<string, string>), Authorization: `Bearer ${token}` };
    else if (this.#basic) opts.auth = this.#basic;
  }
}

/** The pod's ServiceAccount credentials; `dir` is for tests. */
export function loadInClusterConfig(
  env: NodeJS.ProcessEnv = process.env,
  dir: string = IN_CLUSTER_DIR,
): LightKubeConfig {
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
  const namespaceFile = join(dir, "namespace");
  const namespace = existsSync(namespaceFile) ? readFileSync(namespaceFile, "utf8").trim() : undefined;
  return new LightKubeConfig({
    context: "in-cluster",
    ...(namespace ? { namespace } : {}),
    cluster: {
      server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
      ca: { file: join(dir, "ca.crt") },
      insecureSkipTlsVerify: false,
    },
    user: { tokenFile },
  });
}

/** A kubeconfig file, or several joined by the path delimiter (merged as kubectl does). */
export async function loadKubeconfigFile(
  paths: string,
  options: { context?: string; execRunner?: ExecRunner } = {},
): Promise<LightKubeConfig> {
  const { parse } = await import("yaml");
  const list = paths.split(delimiter).filter(Boolean);
  const files = list
    .filter((p, i) => i === 0 || existsSync(p)) // kubectl skips missing files after the first
    .map((path) => {
      let text: string;
      try {
        text = readFileSync(path, "utf8");
      } catch (error) {
        throw new KubeconfigError(`cannot read the kubeconfig ${path}: ${(error as Error).message}`);
      }
      let doc: unknown;
      try {
        doc = parse(text);
      } catch (error) {
        throw new KubeconfigError(`${path} is not valid YAML: ${(error as Error).message.split("\n")[0]}`);
      }
      return parseKubeconfigDocument(doc, path, dirname(path));
    });
  const selection = selectContext(mergeKubeconfigs(files), list.join(delimiter), options.context);
  return new LightKubeConfig(selection, options.execRunner ? { execRunner: options.execRunner } : {});
}

/**
 * The manager's rule: `--kubeconfig` / KUBECONFIG when given, else in-cluster credentials, else
 * ~/.kube/config (the order of controller-runtime).
 */
export async function loadKubeConfig(
  options: { kubeconfig?: string; env?: NodeJS.ProcessEnv; inClusterDir?: string; home?: string } = {},
): Promise<LightKubeConfig> {
  if (options.kubeconfig) return loadKubeconfigFile(options.kubeconfig);
  const env = options.env ?? process.env;
  if (env.KUBERNETES_SERVICE_HOST) return loadInClusterConfig(env, options.inClusterDir);
  const fallback = join(options.home ?? homedir(), ".kube", "config");
  if (existsSync(fallback)) return loadKubeconfigFile(fallback);
  throw new KubeconfigError(
    `no Kubernetes configuration: not in a cluster, no --kubeconfig or KUBECONFIG, and no ${fallback}`,
  );
}
