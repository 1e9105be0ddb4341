import { createSecureContext, rootCertificates } from "node:tls";
import type { IncomingHttpHeaders, IncomingMessage } from "../lib/builtins.ts";
import { type Hop, nextHop } from "./redirects.ts";

// The CommonJS view of node:http: an ESM import of it also loads Node's internal undici (building the
// ESM namespace reads node:http's lazy WebSocket/MessageEvent/CloseEvent exports).
const http = process.getBuiltinModule("node:http");
const https = process.getBuiltinModule("node:https");

/**
 * The sidecar's one HTTP client, for Entra and for downstream APIs, over node:https / node:http.
 *
 * Not undici, and not the global fetch (Node's internal undici): loading either costs the sidecar
 * 8–13 MB of anonymous plus as much file-backed resident memory, and its target is 80 MB under load
 * (docs/dependencies.md). Trust is added per agent, never by turning TLS verification off or by
 * touching process-wide settings.
 */

export type OutboundFailure = "timeout" | "unreachable" | "too-large" | "broken";

/** A failed exchange. The message names only the host: headers and bodies carry tokens. */
export class OutboundError extends Error {
  override name = "OutboundError";
  readonly kind: OutboundFailure;
  readonly host: string;
  /** Node's error code (ECONNREFUSED, CERT_HAS_EXPIRED, …) when there is one. */
  readonly code: string | undefined;
  constructor(kind: OutboundFailure, host: string, detail: string, code?: string) {
    super(`${host} ${detail}${code ? ` (${code})` : ""}`);
    this.kind = kind;
    this.host = host;
    this.code = code;
  }
}

export interface OutboundRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** Bounds the whole exchange (connect, headers, body, every redirect). */
  timeoutMs: number;
  maxResponseBytes?: number;
  /** Redirects followed (default none: the 3xx answer is returned). */
  maxRedirects?: number;
  /**
   * Sending it twice is harmless (GET, a token request): one retry when a kept-alive socket turns out
   * to have been closed by the server before it answered.
   */
  idempotent?: boolean;
}

export interface OutboundResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface OutboundOptions {
  /** Extra CA certificates (PEM) trusted in addition to the system roots, e.g. a local Entra emulator's. */
  extraCaPem?: string;
  maxSockets?: number;
  /**
   * `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy`, `NO_PROXY`/`no_proxy` (the lower-case form
   * wins), as .NET's HttpClient honours them: Node's built-in proxy support of its agents (`proxyEnv`),
   * which tunnels HTTPS through the proxy with CONNECT and sends plain HTTP to it in absolute form.
   */
  proxyEnv?: Readonly<Record<string, string | undefined>>;
}

const PROXY_VARIABLES = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"];

/** Only the proxy variables of an environment, or undefined when none is set (pure). */
export function proxyVariables(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const name of PROXY_VARIABLES) {
    const value = env[name];
    if (value !== undefined && value !== "") out[name] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export interface Outbound {
  request(url: string, init: OutboundRequest): Promise<OutboundResponse>;
  /** Destroys every socket; later requests fail. */
  close(): void;
}

const FREE_SOCKET_TIMEOUT_MS = 30_000;

export function createOutbound(options: OutboundOptions = {}): Outbound {
  const proxyEnv = options.proxyEnv ? proxyVariables(options.proxyEnv) : undefined;
  const common = {
    keepAlive: true,
    maxSockets: options.maxSockets ?? 64,
    timeout: FREE_SOCKET_TIMEOUT_MS,
    ...(proxyEnv ? { proxyEnv } : {}),
  };
  // One TLS context for every connection: otherwise each tls.connect builds a context of its own (given
  // `ca`, parsing the ~150 system roots again: about 0.8 MB of native memory and a millisecond each).
  const httpsAgent = new https.Agent({
    ...common,
    secureContext: createSecureContext(
      options.extraCaPem ? { ca: [...rootCertificates, options.extraCaPem] } : {},
    ),
  });
  const httpAgent = new http.Agent(common);
  let closed = false;

  async function request(url: string, init: OutboundRequest): Promise<OutboundResponse> {
    const deadline = performance.now() + init.timeoutMs;
    let hop: Hop = {
      url: new URL(url),
      method: init.method.toUpperCase(),
      headers: lowerCaseKeys(init.headers),
      ...(init.body !== undefined ? { body: init.body } : {}),
    };
    for (let redirects = 0; ; redirects++) {
      if (closed)
        throw new OutboundError("unreachable", hop.url.host, "cannot be called: the client is closed");
      const response = await exchangeWithRetry(hop, deadline, init);
      const next =
        redirects < (init.maxRedirects ?? 0)
          ? nextHop(hop, response.status, response.headers.location)
          : undefined;
      if (!next) return response;
      hop = next;
    }
  }

  async function exchangeWithRetry(
    hop: Hop,
    deadline: number,
    init: OutboundRequest,
  ): Promise<OutboundResponse> {
    try {
      return await exchange(hop, deadline, init.maxResponseBytes);
    } catch (error) {
      if (!(error instanceof StaleSocketError)) throw error;
      if (init.idempotent || hop.method === "GET" || hop.method === "HEAD") {
        return exchange(hop, deadline, init.maxResponseBytes).catch((again: unknown) => {
          throw again instanceof StaleSocketError ? again.failure : again;
        });
      }
      throw error.failure;
    }
  }

  function exchange(hop: Hop, deadline: number, maxBytes: number | undefined): Promise<OutboundResponse> {
    const host = hop.url.host;
    const secure = hop.url.protocol === "https:";
    if (!secure && hop.url.protocol !== "http:") {
      return Promise.reject(new OutboundError("unreachable", host, `uses ${hop.url.protocol}, not http(s)`));
    }
    const headers = { ...hop.headers };
    if (hop.body !== undefined) headers["content-length"] = String(Buffer.byteLength(hop.body));
    return new Promise<OutboundResponse>((resolve, reject) => {
      let settled = false;
      let answered = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(error);
      };
      const timer = setTimeout(
        () => fail(new OutboundError("timeout", host, "did not answer in time")),
        Math.max(0, deadline - performance.now()),
      );
      const onResponse = (res: IncomingMessage) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (maxBytes !== undefined && size > maxBytes) {
            fail(new OutboundError("too-large", host, `answered more than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        const brokeOff = () => fail(new OutboundError("broken", host, "broke off its answer"));
        res.on("error", brokeOff);
        res.on("close", () => {
          if (!res.complete) brokeOff();
        });
      };
      const options = { method: hop.method, headers, agent: secure ? httpsAgent : httpAgent };
      const req = secure
        ? https.request(hop.url, options, onResponse)
        : http.request(hop.url, options, onResponse);
      req.on("error", (error: NodeJS.ErrnoException) => {
        if (answered) {
          fail(new OutboundError("broken", host, "broke off its answer", error.code));
          return;
        }
        const failure = new OutboundError("unreachable", host, "could not be reached", error.code);
        // The server closed a kept-alive socket just as we reused it: nothing reached it, or it did not
        // answer; the caller may send again on a fresh socket (Node's documented race).
        const stale = req.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE");
        fail(stale ? new StaleSocketError(failure) : failure);
      });
      req.end(hop.body);
    });
  }

  return {
    request,
    close() {
      closed = true;
      httpsAgent.destroy();
      httpAgent.destroy();
    },
  };
}

class StaleSocketError extends Error {
  readonly failure: OutboundError;
  constructor(failure: OutboundError) {
    super(failure.message);
    this.failure = failure;
  }
}

function lowerCaseKeys(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
}

/** A response header as one string (repeated headers joined as HTTP allows), or undefined. */
export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}
