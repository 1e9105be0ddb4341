import type { IncomingMessage, ServerResponse } from "../../lib/builtins.ts";
import type { MetricsSink } from "../metrics.ts";
import type { CachedToken } from "../tokens/cache.ts";
import type { Resolved } from "./context.ts";
import { JSON_OK } from "./ok.ts";

export const UNAUTHENTICATED_HEADER_ROUTE = "/AuthorizationHeaderUnauthenticated/:apiName";
const PREFIX = "/AuthorizationHeaderUnauthenticated/";

/**
 * Unauthenticated requests are fully described by their URL, so the resolved cache key is remembered
 * per raw URL once fastify has routed, validated and resolved that URL: the same URL always gets the
 * same answer from those steps, so a repeat is two Map lookups and a pre-serialised body.
 */
export class KnownUrls {
  readonly #map = new Map<string, Resolved>();
  readonly #max: number;
  constructor(max = 1000) {
    this.#max = max;
  }
  get(url: string): Resolved | undefined {
    return this.#map.get(url);
  }
  set(url: string, resolved: Resolved): void {
    // Forced refreshes and requests that log a warning must go through the route every time.
    if (resolved.force || resolved.warnings.length > 0) return;
    if (this.#map.size >= this.#max) this.#map.clear();
    this.#map.set(url, resolved);
  }
}

// The answer's headers are the same for every request a token serves: built once per token, not per
// request (no object spread or byte count of the body on the hot path).
const answerHeaders = new WeakMap<CachedToken, Readonly<Record<string, string | number>>>();

function headersFor(token: CachedToken): Readonly<Record<string, string | number>> {
  let headers = answerHeaders.get(token);
  if (!headers) {
    headers = { ...JSON_OK, "content-length": Buffer.byteLength(token.headerBody) };
    answerHeaders.set(token, headers);
  }
  return headers;
}

/**
 * The hot path below fastify: a repeated `GET /AuthorizationHeaderUnauthenticated/...` whose token is
 * cached is answered straight from the cache (same status, headers and body as the route sends), so it
 * skips fastify's per-request objects. Anything else (a new URL, a miss, another method) returns false
 * and goes through fastify as usual.
 */
export function answerFromCache(
  known: KnownUrls,
  tokens: { lookup(key: string): CachedToken | undefined },
  request: IncomingMessage,
  response: ServerResponse,
  metrics: MetricsSink | undefined,
): boolean {
  const url = request.url;
  if (request.method !== "GET" || url === undefined || !url.startsWith(PREFIX)) return false;
  // A bearer token may make the request a user's (see routes/auth.ts): only fastify's route decides that.
  if (request.headers.authorization !== undefined) return false;
  const resolved = known.get(url);
  if (!resolved) return false;
  const hit = tokens.lookup(resolved.key);
  if (!hit) return false;
  response.writeHead(200, headersFor(hit));
  response.end(hit.headerBody);
  metrics?.httpRequest(UNAUTHENTICATED_HEADER_ROUTE, 200);
  return true;
}
