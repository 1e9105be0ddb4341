import { type Outbound, OutboundError, type OutboundResponse } from "./outbound.ts";
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

/** The DownstreamError for a failed exchange: 504 for a timeout, 502 for the rest (pure). */
export function downstreamFailure(
  apiName: string,
  error: unknown,
  maxResponseBytes: number,
): DownstreamError {
  const host = error instanceof OutboundError ? error.host : "";
  const api = `The downstream API '${apiName}'${host ? ` (${host})` : ""}`;
  if (!(error instanceof OutboundError)) return new DownstreamError(502, `${api} could not be called`);
  switch (error.kind) {
    case "timeout":
      return new DownstreamError(504, `${api} did not answer in time`);
    case "too-large":
      return new DownstreamError(
        502,
        `The downstream API '${apiName}' answered more than ${maxResponseBytes} bytes`,
      );
    case "broken":
      return new DownstreamError(502, `The downstream API '${apiName}' broke off its answer`);
    default:
      return new DownstreamError(502, `${api} could not be reached`);
  }
}

export function createDownstreamClient(options: DownstreamOptions): DownstreamClient {
  return {
    async call({ api, authorizationHeader, body }) {
      const headers: Record<string, string> = {
        ...api.extraHeaders,
        accept: api.acceptHeader,
        authorization: authorizationHeader,
      };
      if (body) headers["content-type"] = body.contentType;
      const url = downstreamUrl(api);
      let response: OutboundResponse;
      try {
        response = await options.outbound.request(url, {
          method: api.httpMethod,
          headers,
          ...(body ? { body: body.text } : {}),
          timeoutMs: options.timeoutMs,
          maxResponseBytes: options.maxResponseBytes,
          // Off unless configured (Microsoft's default since 1.1.0); a redirect off the origin drops the token.
          maxRedirects: options.allowRedirects ? 5 : 0,
        });
      } catch (error) {
        throw downstreamFailure(api.name, error, options.maxResponseBytes);
      }
      const out: Record<string, string[]> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        const canonical = CONTENT_HEADERS[name];
        if (canonical && value !== undefined) out[canonical] = Array.isArray(value) ? value : [value];
      }
      const text = response.body.toString("utf8");
      const result: DownstreamResult = {
        statusCode: response.status,
        headers: out,
        content: text.length > 0 ? text : null,
      };
      const www = response.headers["www-authenticate"];
      return www === undefined ? { result } : { result, wwwAuthenticate: www };
    },
  };
}
