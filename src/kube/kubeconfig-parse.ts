import { isAbsolute, resolve } from "node:path";

/**
 * Pure rules for kubeconfig files (clientcmd's `Config`, `v1`): validate the document, resolve relative
 * file paths against the file they came from, merge several files the way kubectl does, and select one
 * context. No I/O here; `kubeconfig.ts` reads the files and turns a selection into credentials.
 */

export class KubeconfigError extends Error {
  override name = "KubeconfigError";
}

/** Inline base64 data or a path (already resolved against the kubeconfig's directory). */
export type Material = { data: Buffer } | { file: string };

export interface ExecSettings {
  command: string;
  args: string[];
  env: Array<{ name: string; value: string }>;
  apiVersion: string;
}

export interface ClusterSettings {
  server: string;
  ca?: Material;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
  proxyUrl?: string;
}

export interface UserSettings {
  clientCertificate?: Material;
  clientKey?: Material;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  exec?: ExecSettings;
}

export interface KubeconfigSelection {
  context: string;
  namespace?: string;
  cluster: ClusterSettings;
  user: UserSettings;
}

/** One file's named entries, paths already resolved. */
export interface KubeconfigFile {
  currentContext?: string;
  clusters: Map<string, ClusterSettings>;
  users: Map<string, UserSettings>;
  contexts: Map<string, { cluster: string; user: string; namespace?: string }>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function str(o: Obj, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new KubeconfigError(`${where}: '${key}' must be a string`);
  return v;
}

function material(
  o: Obj,
  dataKey: string,
  fileKey: string,
  where: string,
  dir: string,
): Material | undefined {
  const data = str(o, dataKey, where);
  if (data !== undefined) {
    if (!/^[A-Za-z0-9+/=\s]+$/.test(data)) throw new KubeconfigError(`${where}: '${dataKey}' is not base64`);
    return { data: Buffer.from(data, "base64") };
  }
  const file = str(o, fileKey, where);
  return file === undefined ? undefined : { file: resolvePath(dir, file) };
}

const resolvePath = (dir: string, path: string) => (isAbsolute(path) ? path : resolve(dir, path));

function namedList(doc: Obj, key: string, inner: string, source: string): Array<[string, Obj]> {
  const list = doc[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new KubeconfigError(`${source}: '${key}' must be a list`);
  return list.map((entry, i) => {
    const where = `${source}: ${key}[${i}]`;
    if (!isObj(entry) || typeof entry.name !== "string" || !entry.name)
      throw new KubeconfigError(`${where} needs a name`);
    const body = entry[inner] ?? {};
    if (!isObj(body)) throw new KubeconfigError(`${where}: '${inner}' must be a mapping`);
    return [entry.name, body];
  });
}

function parseCluster(c: Obj, where: string, dir: string): ClusterSettings {
  const server = str(c, "server", where);
  if (!server) throw new KubeconfigError(`${where} has no server`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KubeconfigError(`${where}: server '${server}' is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new KubeconfigError(`${where}: server must be an http(s) URL, got '${server}'`);
  const ca = material(c, "certificate-authority-data", "certificate-authority", where, dir);
  const tlsServerName = str(c, "tls-server-name", where);
  const proxyUrl = str(c, "proxy-url", where);
  return {
    server,
    ...(ca ? { ca } : {}),
    insecureSkipTlsVerify: c["insecure-skip-tls-verify"] === true,
    ...(tlsServerName ? { tlsServerName } : {}),
    ...(proxyUrl ? { proxyUrl } : {}),
  };
}

function parseExec(e: unknown, where: string, dir: string): ExecSettings {
  if (!isObj(e)) throw new KubeconfigError(`${where}: 'exec' must be a mapping`);
  const command = str(e, "command", `${where}.exec`);
  if (!command) throw new KubeconfigError(`${where}.exec has no command`);
  const args = e.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string"))
    throw new KubeconfigError(`${where}.exec: 'args' must be a list of strings`);
  const env = e.env ?? [];
  if (
    !Array.isArray(env) ||
    !env.every((v) => isObj(v) && typeof v.name === "string" && typeof v.value === "string")
  )
    throw new KubeconfigError(`${where}.exec: 'env' must be a list of {name, value}`);
  return {
    // client-go: a command with a path separator is relative to the kubeconfig; a bare name uses PATH.
    command: command.includes("/") ? resolvePath(dir, command) : command,
    args: args as string[],
    env: env as ExecSettings["env"],
    apiVersion: str(e, "apiVersion", `${where}.exec`) ?? "client.authentication.k8s.io/v1",
  };
}

function parseUser(u: Obj, where: string, dir: string): UserSettings {
  if (u["auth-provider"] !== undefined)
    throw new KubeconfigError(
      `${where} uses an auth-provider plugin, which agentid does not support (it was removed from kubectl ` +
        "in 1.26); use an exec plugin, a token, a token file or a client certificate",
    );
  for (const key of ["as", "as-groups", "as-uid", "as-user-extra"])
    if (u[key] !== undefined)
      throw new KubeconfigError(`${where}: impersonation ('${key}') is not supported`);
  const user: UserSettings = {};
  const cert = material(u, "client-certificate-data", "client-certificate", where, dir);
  const key = material(u, "client-key-data", "client-key", where, dir);
  if (Boolean(cert) !== Boolean(key))
    throw new KubeconfigError(`${where} needs both a client certificate and a client key`);
  if (cert && key) Object.assign(user, { clientCertificate: cert, clientKey: key });
  const token = str(u, "token", where);
  if (token) user.token = token.trim();
  const tokenFile = str(u, "tokenFile", where);
  if (tokenFile) user.tokenFile = resolvePath(dir, tokenFile);
  const username = str(u, "username", where);
  const password = str(u, "password", where);
  if (username !== undefined) Object.assign(user, { username, password: password ?? "" });
  if (u.exec !== undefined && u.exec !== null) user.exec = parseExec(u.exec, where, dir);
  return user;
}

/** Validates one parsed kubeconfig document; `dir` is its directory (for relative paths). */
export function parseKubeconfigDocument(doc: unknown, source: string, dir: string): KubeconfigFile {
  if (doc === null || doc === undefined)
    return { clusters: new Map(), users: new Map(), contexts: new Map() };
  if (!isObj(doc)) throw new KubeconfigError(`${source} is not a kubeconfig (expected a mapping)`);
  const currentContext = str(doc, "current-context", source);
  const clusters = new Map<string, ClusterSettings>();
  for (const [name, c] of namedList(doc, "clusters", "cluster", source))
    if (!clusters.has(name)) clusters.set(name, parseCluster(c, `${source}: cluster '${name}'`, dir));
  const users = new Map<string, UserSettings>();
  for (const [name, u] of namedList(doc, "users", "user", source))
    if (!users.has(name)) users.set(name, parseUser(u, `${source}: user '${name}'`, dir));
  const contexts: KubeconfigFile["contexts"] = new Map();
  for (const [name, c] of namedList(doc, "contexts", "context", source)) {
    const where = `${source}: context '${name}'`;
    const cluster = str(c, "cluster", where);
    if (!cluster) throw new KubeconfigError(`${where} names no cluster`);
    const namespace = str(c, "namespace", where);
    if (!contexts.has(name))
      contexts.set(name, { cluster, user: str(c, "user", where) ?? "", ...(namespace ? { namespace } : {}) });
  }
  return { ...(currentContext ? { currentContext } : {}), clusters, users, contexts };
}

/** kubectl's merge of KUBECONFIG files: the first file to set a value (or define a name) wins. */
export function mergeKubeconfigs(files: KubeconfigFile[]): KubeconfigFile {
  const merged: KubeconfigFile = { clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const f of files) {
    if (!merged.currentContext && f.currentContext) merged.currentContext = f.currentContext;
    for (const [k, v] of f.clusters) if (!merged.clusters.has(k)) merged.clusters.set(k, v);
    for (const [k, v] of f.users) if (!merged.users.has(k)) merged.users.set(k, v);
    for (const [k, v] of f.contexts) if (!merged.contexts.has(k)) merged.contexts.set(k, v);
  }
  return merged;
}

/** The current context (or `context`) with its cluster and user. */
export function selectContext(config: KubeconfigFile, source: string, context?: string): KubeconfigSelection {
  const name = context ?? config.currentContext;
  if (!name) throw new KubeconfigError(`${source} has no current-context`);
  const ctx = config.contexts.get(name);
  if (!ctx) throw new KubeconfigError(`${source} has no context '${name}'`);
  const cluster = config.clusters.get(ctx.cluster);
  if (!cluster)
    throw new KubeconfigError(`${source}: context '${name}' names a missing cluster '${ctx.cluster}'`);
  const user = ctx.user ? config.users.get(ctx.user) : {};
  if (!user) throw new KubeconfigError(`${source}: context '${name}' names a missing user '${ctx.user}'`);
  return { context: name, ...(ctx.namespace ? { namespace: ctx.namespace } : {}), cluster, user };
}
