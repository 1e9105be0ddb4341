import { headerText, type Outbound, OutboundError } from "../outbound.ts";
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from "./msal.ts";
import { loadMsal, type Msal } from "./msal.ts";

/**
 * Entra answered with a transient failure (429, 5xx), or could not be reached. Thrown from inside
 * msal-node's network client as an msal AuthError so msal-node passes it through unchanged: that keeps
 * the status and Retry-After for our own backoff, and stops msal-node's throttling cache from blocking
 * our retries for a minute after a 500. The class extends msal-node's, so it exists once msal is loaded.
 */
export interface EntraUnavailableError extends Error {
  name: "EntraUnavailableError";
  readonly status: number;
  /** Milliseconds Entra asked us to wait, if it said. */
  readonly retryAfterMs: number | undefined;
  readonly errorMessage: string;
  /** Set once a retry loop has given up on it, so enclosing legs do not retry it again. */
  exhausted: boolean;
}

type UnavailableClass = new (status: number, message: string, retryAfterMs?: number) => EntraUnavailableError;
let unavailableClass: UnavailableClass | undefined;

export function entraUnavailable(
  msal: Msal,
  status: number,
  message: string,
  retryAfterMs?: number,
): EntraUnavailableError {
  unavailableClass ??= class extends msal.AuthError implements EntraUnavailableError {
    override name = "EntraUnavailableError" as const;
    readonly status: number;
    readonly retryAfterMs: number | undefined;
    exhausted = false;
    constructor(s: number, m: string, r?: number) {
      super("entra_unavailable", "", m);
      this.status = s;
      this.retryAfterMs = r;
    }
  };
  return new unavailableClass(status, message, retryAfterMs);
}

export function isEntraUnavailable(error: unknown): error is EntraUnavailableError {
  return error instanceof Error && error.name === "EntraUnavailableError";
}

/** Retry-After as seconds or an HTTP date → milliseconds (pure). */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export interface NetworkClientOptions {
  outbound: Outbound;
  timeoutMs: number;
  /** Called once per HTTP exchange with Entra, for metrics. */
  observe?: (url: string, status: number, seconds: number) => void;
}

/** Entra's answers are a few kilobytes; anything this large is not Entra. */
const MAX_ENTRA_RESPONSE_BYTES = 4 * 1024 * 1024;

/** msal-node's INetworkModule over the sidecar's outbound client (its CA trust and timeouts). */
export function createNetworkClient(options: NetworkClientOptions): INetworkModule {
  async function send<T>(
    method: "GET" | "POST",
    url: string,
    init?: NetworkRequestOptions,
  ): Promise<NetworkResponse<T>> {
    const msal = await loadMsal();
    const started = performance.now();
    let status = 0;
    try {
      const response = await options.outbound.request(url, {
        method,
        headers: init?.headers ?? {},
        ...(method === "POST" ? { body: init?.body ?? "" } : {}),
        timeoutMs: options.timeoutMs,
        maxResponseBytes: MAX_ENTRA_RESPONSE_BYTES,
        // Sending a token request twice only issues a second token.
        idempotent: true,
      });
      status = response.status;
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        const text = headerText(value);
        if (text !== undefined) headers[name] = text;
      }
      if (status === 429 || status >= 500) {
        throw entraUnavailable(
          msal,
          status,
          `Entra answered HTTP ${status}`,
          parseRetryAfter(headers["retry-after"]),
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(response.body.toString("utf8"));
      } catch {
        throw entraUnavailable(msal, status, `Entra answered HTTP ${status} with a body that is not JSON`);
      }
      return { headers, body: body as T, status };
    } catch (error) {
      if (error instanceof msal.AuthError) throw error;
      const reason =
        error instanceof OutboundError && error.kind === "timeout" ? "timed out" : "could not be reached";
      throw entraUnavailable(msal, 0, `Entra ${reason} (${new URL(url).host})`);
    } finally {
      options.observe?.(url, status, (performance.now() - started) / 1000);
    }
  }
  return {
    sendGetRequestAsync: <T>(url: string, init?: NetworkRequestOptions) => send<T>("GET", url, init),
    sendPostRequestAsync: <T>(url: string, init?: NetworkRequestOptions) => send<T>("POST", url, init),
  };
}
