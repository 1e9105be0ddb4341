/** One request of an exchange that may be redirected. Header names are lower case. */
export interface Hop {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Sent with a body; meaningless once the body is dropped. */
const CONTENT_HEADERS = [
  "content-type",
  "content-length",
  "content-encoding",
  "content-language",
  "content-location",
];
/** Credentials meant for the origin that was called, not for wherever it points. */
const ORIGIN_BOUND_HEADERS = ["authorization", "proxy-authorization", "cookie", "host"];

/**
 * The request a redirect answer asks for, or undefined when the answer is not a redirect to follow
 * (pure). Browser and undici semantics: 303 turns into GET, 301/302 turn a POST into GET, 307/308 keep
 * the method and body. Leaving the origin (scheme, host, port) drops the credentials: a token for one
 * API must not reach another.
 */
export function nextHop(hop: Hop, status: number, location: string | string[] | undefined): Hop | undefined {
  if (!REDIRECTS.has(status) || typeof location !== "string" || location === "") return undefined;
  let url: URL;
  try {
    url = new URL(location, hop.url);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  const headers = { ...hop.headers };
  let method = hop.method;
  let body = hop.body;
  const toGet = status === 303 ? method !== "HEAD" : (status === 301 || status === 302) && method === "POST";
  if (toGet) {
    method = "GET";
    body = undefined;
    for (const name of CONTENT_HEADERS) delete headers[name];
  }
  if (url.origin !== hop.url.origin) for (const name of ORIGIN_BOUND_HEADERS) delete headers[name];
  return { url, method, headers, ...(body !== undefined ? { body } : {}) };
}
