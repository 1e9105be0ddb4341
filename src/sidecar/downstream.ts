import type { Dispatcher } from "undici";
import type { Outbound, OutboundClient } from "./http.ts";
import type { EffectiveApi } from "./routes/plan.ts";

/** The `/DownstreamApi` answer: Microsoft's `DownstreamApiResult`. */
export interface DownstreamResult {
  statusCode: number;
  headers: Record<string, string[]>;
  content: string | null;
}

export class DownstreamError extends Error {
  readonly status: 502 | 504;
  constructor(status: 502 | 504, message: string) {
    super(message);
    this.name = "DownstreamError";
    this.status = status;
  }
}

/** .NET's content headers (HttpContent.Headers) in .NET's casing: the only headers Microsoft returns. */
const CONTENT_HEADERS: Record<string, string> = {
  allow: "Allow",
  "content-disposition": "Content-Disposition",
  "content-encoding": "Content-Encoding",
  "content-language": "Content-Language",
  "content-length": "Content-Length",
  "content-location": "Content-Location",
  "content-md5": "Content-MD5",
  "content-range": "Content-Range",
  "content-type": "Content-Type",
  expires: "Expires",
  "last-modified": "Last-Modified",
};

/** `BaseUrl` + `/` + `RelativePath`, then the extra query parameters (pure). */
export function downstreamUrl(api: EffectiveApi): string {
  if (!api.baseUrl) throw new Error(`the API '${api.name}' has no BaseUrl`);
  const url = new URL(`${api.baseUrl.replace(/\/+$/, "")}/${api.relativePath.replace(/^\/+/, "")}`);
  for (const [k, v] of Object.entries(api.extraQuery)) url.searchParams.append(k, v);
  return url.toString();
}

/** The claims of a `WWW-Authenticate: Bearer … claims="<base64>"` challenge, decoded (pure). */
export function claimsChallenge(wwwAuthenticate: string | string[] | undefined): string | undefined {
  const text = Array.isArray(wwwAuthenticate) ? wwwAuthenticate.join(", ") : wwwAuthenticate;
  const encoded = text ? /claims="([^"]+)"/i.exec(text)?.[1] : undefined;
  if (!encoded) return undefined;
  try {
    const decoded = Buffer.from(encoded, "base64").toString("utf8");
    JSON.parse(decoded);
    return decoded;
  } catch {
    return undefined;
  }
}

export interface DownstreamCall {
  api: EffectiveApi;
  authorizationHeader: string;
  body?: { contentType: string; text: string };
}

export interface DownstreamOptions {
  outbound: Outbound;
  allowRedirects: boolean;
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface DownstreamClient {
  call(call: DownstreamCall): Promise<{ result: DownstreamResult; wwwAuthenticate?: string | string[] }>;
}

export function createDownstreamClient(options: DownstreamOptions): DownstreamClient {
  // Redirects are off unless configured (Microsoft's default since 1.1.0); undici drops Authorization
  // when a redirect leaves the origin.
  let client: Promise<OutboundClient> | undefined;
  const outbound = (): Promise<OutboundClient> =>
    (client ??= options.outbound.get().then(({ undici, dispatcher }) => ({
      undici,
      dispatcher: options.allowRedirects
        ? dispatcher.compose(undici.interceptors.redirect({ maxRedirections: 5 }))
        : dispatcher,
    })));
  return {
    async call({ api, authorizationHeader, body }) {
      const headers: Record<string, string> = {
        ...api.extraHeaders,
        accept: api.acceptHeader,
        authorization: authorizationHeader,
      };
      if (body) headers["content-type"] = body.contentType;
      const url = downstreamUrl(api);
      const { undici, dispatcher } = await outbound();
      let response: Dispatcher.ResponseData;
      try {
        response = await undici.request(url, {
          method: api.httpMethod as Dispatcher.HttpMethod,
          headers,
          dispatcher,
          ...(body ? { body: body.text } : {}),
          signal: AbortSignal.timeout(options.timeoutMs),
        });
      } catch (error) {
        const timedOut =
          error instanceof Error &&
          (error.name === "TimeoutError" || error instanceof undici.errors.HeadersTimeoutError);
        const host = new URL(url).host;
        throw timedOut
          ? new DownstreamError(504, `The downstream API '${api.name}' (${host}) did not answer in time`)
          : new DownstreamError(502, `The downstream API '${api.name}' (${host}) could not be reached`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const chunk of response.body) {
          size += (chunk as Buffer).length;
          if (size > options.maxResponseBytes) {
            response.body.destroy();
            throw new DownstreamError(
              502,
              `The downstream API '${api.name}' answered more than ${options.maxResponseBytes} bytes`,
            );
          }
          chunks.push(chunk as Buffer);
        }
      } catch (error) {
        if (error instanceof DownstreamError) throw error;
        throw new DownstreamError(502, `The downstream API '${api.name}' broke off its answer`);
      }
      const out: Record<string, string[]> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        const canonical = CONTENT_HEADERS[name.toLowerCase()];
        if (canonical && value !== undefined) out[canonical] = Array.isArray(value) ? value : [value];
      }
      const text = Buffer.concat(chunks).toString("utf8");
      const result: DownstreamResult = {
        statusCode: response.statusCode,
        headers: out,
        content: text.length > 0 ? text : null,
      };
      const www = response.headers["www-authenticate"];
      return www === undefined ? { result } : { result, wwwAuthenticate: www };
    },
  };
}
