import { Agent, type Dispatcher, ProxyAgent, request as undiciRequest } from "undici";
import { requestDeadline } from "./deadline.ts";
import { apiErrorFrom, isNotFound } from "./errors.ts";
import type { HttpsOptionsTarget, KubeConfigLike } from "./kubeconfig.ts";

/**
 * Raw JSON requests to the Kubernetes API over a KubeConfig's TLS and credentials.
 *
 * Objects travel as plain JSON in both directions. The typed models of @kubernetes/client-node drop fields
 * they do not know (for example `initContainers[].restartPolicy` in older models), so a read-modify-write
 * through them can erase data; this client never converts.
 */

export { ApiError, apiErrorFrom, isApiError, isConflict, isGone, isNotFound } from "./errors.ts";

export type KubeMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export const PATCH_CONTENT_TYPES = {
  json: "application/json-patch+json",
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
  apply: "application/apply-patch+yaml",
} as const;
export type PatchType = keyof typeof PATCH_CONTENT_TYPES;

/** One RFC 6902 operation. */
export type JsonPatchOperation =
  | { op: "add" | "replace" | "test"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "move" | "copy"; from: string; path: string };

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Query;
  signal?: AbortSignal;
}

export interface RequestInfo {
  method: KubeMethod;
  path: string;
  status: number;
  /** True for watch streams, so that a request counter can tell them apart. */
  watch: boolean;
}

export interface KubeClientOptions {
  /** Observes every finished request (status 0 when no response came), e.g. for a request counter. */
  onRequest?: (info: RequestInfo) => void;
  /** Whole-request timeout for ordinary requests; default 30 s. Watch streams use their own stall timer. */
  requestTimeoutMs?: number;
}

export interface KubeClient {
  /** The API server's base URL (without a trailing slash). */
  readonly server: string;
  request<T = unknown>(method: KubeMethod, path: string, options?: RequestOptions): Promise<T>;
  get<T = unknown>(path: string, query?: Query): Promise<T>;
  /** GET that answers `undefined` instead of throwing for 404. */
  getOptional<T = unknown>(path: string, query?: Query): Promise<T | undefined>;
  create<T = unknown>(path: string, body: unknown, query?: Query): Promise<T>;
  replace<T = unknown>(path: string, body: unknown, query?: Query): Promise<T>;
  patch<T = unknown>(path: string, type: PatchType, patch: unknown, query?: Query): Promise<T>;
  delete<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T>;
  /** Opens a streaming GET (a watch). The caller reads `body` and aborts `signal` to close it. */
  stream(path: string, query: Query, signal: AbortSignal): Promise<AsyncIterable<Buffer | string>>;
  /**
   * Closes the connection pool once the requests in flight have ended. With `forceAfterMs`, requests
   * still in flight after that long are aborted and their connections destroyed: a stopping process
   * must not wait up to the request timeout for an API server that no longer answers. Final: every
   * later request (and stream) rejects with `ClientClosedError` instead of opening a new pool.
   */
  close(options?: { forceAfterMs?: number }): Promise<void>;
}

/** A request made on a client after its `close()`: it was not sent. */
export class ClientClosedError extends Error {
  constructor(method: string, path: string) {
    super(`${method} ${path}: the Kubernetes API client is closed; the request was not sent`);
    this.name = "ClientClosedError";
  }
}

function buildUrlPath(basePath: string, path: string, query: Query | undefined): string {
  if (!path.startsWith("/")) throw new Error(`API path must start with '/': ${path}`);
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined) params.set(key, String(value));
  }
  const search = params.toString();
  return `${basePath}${path}${search ? `?${search}` : ""}`;
}

interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

/** Binary TLS material as undici wants it (a kubeconfig may hand out strings or lists). */
function asBuffer(value: HttpsOptionsTarget["ca"]): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return Buffer.concat(value.map((v) => Buffer.from(v as string | Buffer)));
  return Buffer.from(value as string | Buffer);
}

/** Reads TLS material and fresh auth headers from the KubeConfig (exec and file token providers rotate). */
async function connectionOptions(
  kubeConfig: KubeConfigLike,
): Promise<{ tls: TlsMaterial; headers: Record<string, string> }> {
  const opts: HttpsOptionsTarget = {};
  await kubeConfig.applyToHTTPSOptions(opts);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(opts.headers ?? {})) {
    if (value !== undefined) headers[name] = String(value);
  }
  if (opts.auth) headers.Authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
  const tls: TlsMaterial = {};
  const ca = asBuffer(opts.ca);
  const cert = asBuffer(opts.cert);
  const key = asBuffer(opts.key as HttpsOptionsTarget["ca"]);
  if (ca) tls.ca = ca;
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  if (opts.rejectUnauthorized !== undefined) tls.rejectUnauthorized = opts.rejectUnauthorized;
  if (opts.servername) tls.servername = opts.servername;
  return { tls, headers };
}

type Verbs = Pick<KubeClient, "request" | "get" | "getOptional" | "create" | "replace" | "patch" | "delete">;

/** The client's verbs, each one request through `request` (shared by the client and its fenced view). */
export function verbsOver(request: KubeClient["request"]): Verbs {
  return {
    request,
    get: (path, query) => request("GET", path, { query }),
    async getOptional(path, query) {
      try {
        return await request("GET", path, { query });
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
    create: (path, body, query) => request("POST", path, { body, query }),
    replace: (path, body, query) => request("PUT", path, { body, query }),
    patch: (path, type, patch, query) =>
      request("PATCH", path, { body: patch, contentType: PATCH_CONTENT_TYPES[type], query }),
    delete: (path, body, query) => request("DELETE", path, { body, query }),
  };
}

export function createKubeClient(kubeConfig: KubeConfigLike, options: KubeClientOptions = {}): KubeClient {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const serverUrl = new URL(cluster.server);
  const server = cluster.server.replace(/\/+$/, "");
  const basePath = serverUrl.pathname.replace(/\/+$/, "");
  const origin = serverUrl.origin;
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  let dispatcher: Dispatcher | undefined;
  /** Set by close(): a closed client never opens a new pool behind its owner's back. */
  let closed = false;

  function dispatcherFor(tls: TlsMaterial): Dispatcher {
    if (dispatcher) return dispatcher;
    // HTTP/1.1 on purpose: each watch gets its own connection, so a stalled or dropped stream is
    // detected and replaced on its own instead of taking every multiplexed watch down with it.
    const common = { allowH2: false, keepAliveTimeout: 30_000, headersTimeout: requestTimeoutMs };
    if (cluster?.proxyUrl) {
      if (cluster.proxyUrl.startsWith("socks"))
        throw new Error("SOCKS proxies in the kubeconfig are not supported");
      dispatcher = new ProxyAgent({ uri: cluster.proxyUrl, requestTls: tls, ...common });
    } else {
      dispatcher = new Agent({ connect: tls, ...common });
    }
    return dispatcher;
  }

  async function send(method: KubeMethod, path: string, opts: RequestOptions, watch: boolean) {
    if (closed) throw new ClientClosedError(method, path);
    const { tls, headers } = await connectionOptions(kubeConfig);
    // Checked again: close() may have come while the credentials were read.
    if (closed) throw new ClientClosedError(method, path);
    const urlPath = buildUrlPath(basePath, path, opts.query);
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const requestHeaders: Record<string, string> = { ...headers, Accept: "application/json" };
    if (body !== undefined) requestHeaders["Content-Type"] = opts.contentType ?? "application/json";
    let status = 0;
    try {
      const response = await undiciRequest(`${origin}${urlPath}`, {
        method,
        headers: requestHeaders,
        body: body ?? null,
        dispatcher: dispatcherFor(tls),
        signal: opts.signal ?? null,
        // Watches are idle for long stretches; the informer's stall timer decides when one is dead.
        bodyTimeout: watch ? 0 : requestTimeoutMs,
      });
      status = response.statusCode;
      if (status < 200 || status > 299) {
        const text = await response.body.text().catch(() => "");
        const retryAfter = response.headers["retry-after"];
        throw apiErrorFrom(
          status,
          text,
          method,
          path,
          typeof retryAfter === "string" ? retryAfter : undefined,
        );
      }
      return response;
    } finally {
      if (!watch || status === 0 || status > 299) options.onRequest?.({ method, path, status, watch });
    }
  }

  async function request<T>(method: KubeMethod, path: string, opts: RequestOptions = {}): Promise<T> {
    // The timeout covers the whole request, reading the body included; released as soon as it ends.
    const deadline = requestDeadline(opts.signal, requestTimeoutMs);
    try {
      const response = await send(method, path, { ...opts, signal: deadline.signal }, false);
      const text = await response.body.text();
      if (!text) return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new Error(
          `${method} ${path}: the API server answered ${response.statusCode} with a body that is not JSON`,
        );
      }
    } finally {
      deadline.done();
    }
  }

  return {
    server,
    ...verbsOver(request),
    async stream(path, query, signal) {
      const response = await send("GET", path, { query, signal }, true);
      options.onRequest?.({ method: "GET", path, status: response.statusCode, watch: true });
      return response.body;
    },
    async close(closeOptions = {}) {
      closed = true;
      const d = dispatcher;
      dispatcher = undefined;
      if (!d) return;
      const { forceAfterMs } = closeOptions;
      if (forceAfterMs === undefined) return d.close();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<"expired">((resolve) => {
        timer = setTimeout(() => resolve("expired"), forceAfterMs);
      });
      const graceful = d.close().then(() => "closed" as const);
      // Only one of the two settles first; the other is not left to reject unobserved.
      graceful.catch(() => {});
      try {
        if ((await Promise.race([graceful, expired])) === "expired") await d.destroy();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * One request without keeping a client around (the connection is closed afterwards). Long-lived code
 * should hold a client from `createKubeClient` so connections are reused.
 */
export async function request<T = unknown>(
  kubeConfig: KubeConfigLike,
  method: KubeMethod,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<T> {
  const client = createKubeClient(kubeConfig);
  try {
    return await client.request<T>(method, path, { body, ...(contentType ? { contentType } : {}) });
  } finally {
    await client.close();
  }
}

/** Escapes one JSON Pointer segment (RFC 6901), e.g. for a label key containing '/'. */
export function jsonPointerSegment(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}
