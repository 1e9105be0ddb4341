import { children, type FlatConfig, get } from "./flat.ts";
import type { AcquireTokenOptions, DownstreamApi } from "./types.ts";
import {
  isGuid,
  isHeaderName,
  isHeaderValue,
  isMetaTenant,
  isReservedHeader,
  isTenant,
  parseBool,
  parseHttpMethod,
  splitScopes,
} from "./values.ts";

function bool(flat: FlatConfig, key: string, fallback: boolean, problems: string[]): boolean {
  const raw = get(flat, key);
  if (raw === undefined || raw.trim() === "") return fallback;
  const parsed = parseBool(raw);
  if (parsed === undefined) {
    problems.push(`${key} must be true or false, got '${raw}'`);
    return fallback;
  }
  return parsed;
}

function dictionary(flat: FlatConfig, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of children(flat, prefix)) out[name] = get(flat, `${prefix}:${name}`) ?? "";
  return out;
}

/** Scopes as an indexed array (`Scopes:0`) or a space-separated string (`Scopes`), as Microsoft documents both. */
function bindScopes(flat: FlatConfig, prefix: string): string[] | undefined {
  const scalar = get(flat, `${prefix}:Scopes`);
  const indexed = children(flat, `${prefix}:Scopes`).flatMap((i) =>
    splitScopes(get(flat, `${prefix}:Scopes:${i}`) ?? ""),
  );
  if (indexed.length > 0) return indexed;
  if (scalar !== undefined) return splitScopes(scalar);
  return undefined;
}

function bindAcquireTokenOptions(flat: FlatConfig, p: string, problems: string[]): AcquireTokenOptions {
  const o: AcquireTokenOptions = {};
  const tenant = get(flat, `${p}:Tenant`);
  if (tenant) {
    if (!isTenant(tenant) || isMetaTenant(tenant))
      problems.push(`${p}:Tenant '${tenant}' is not a tenant id or domain`);
    o.tenant = tenant;
  }
  if (bool(flat, `${p}:ForceRefresh`, false, problems)) o.forceRefresh = true;
  const claims = get(flat, `${p}:Claims`);
  if (claims) {
    try {
      JSON.parse(claims);
      o.claims = claims;
    } catch {
      problems.push(`${p}:Claims is not JSON`);
    }
  }
  const correlationId = get(flat, `${p}:CorrelationId`);
  if (correlationId) {
    if (isGuid(correlationId)) o.correlationId = correlationId;
    else problems.push(`${p}:CorrelationId '${correlationId}' is not a GUID`);
  }
  const fmiPath = get(flat, `${p}:FmiPath`);
  if (fmiPath) o.fmiPath = fmiPath;
  for (const unsupported of [
    "PopPublicKey",
    "PopClaim",
    "LongRunningWebApiSessionKey",
    "ManagedIdentity:UserAssignedClientId",
  ]) {
    if (get(flat, `${p}:${unsupported}`))
      problems.push(`${p}:${unsupported} is not supported by this sidecar`);
  }
  return o;
}

function bindApi(flat: FlatConfig, name: string, problems: string[], warnings: string[]): DownstreamApi {
  const p = `DownstreamApis:${name}`;
  const baseUrl = get(flat, `${p}:BaseUrl`);
  if (baseUrl) {
    try {
      const url = new URL(baseUrl);
      if (url.protocol !== "https:" && url.protocol !== "http:")
        problems.push(`${p}:BaseUrl '${baseUrl}' must be http(s)`);
    } catch {
      problems.push(`${p}:BaseUrl '${baseUrl}' is not an absolute URL`);
    }
  }
  const rawMethod = get(flat, `${p}:HttpMethod`);
  let httpMethod = "GET";
  if (rawMethod) {
    const parsed = parseHttpMethod(rawMethod);
    if (parsed) httpMethod = parsed;
    else problems.push(`${p}:HttpMethod '${rawMethod}' is not an HTTP method`);
  }
  const requestAppToken = bool(flat, `${p}:RequestAppToken`, false, problems);
  const scopes = bindScopes(flat, p);
  if (scopes !== undefined && scopes.length === 0) problems.push(`${p}:Scopes is empty`);
  if (requestAppToken && scopes && scopes.length > 0) {
    if (!scopes[0]?.endsWith("/.default")) {
      problems.push(`${p}: RequestAppToken needs a scope ending in '/.default', got '${scopes[0]}'`);
    }
    if (scopes.length > 1) warnings.push(`${p}: app tokens use only the first scope ('${scopes[0]}')`);
  }
  const scheme = get(flat, `${p}:ProtocolScheme`);
  if (scheme && scheme.toLowerCase() !== "bearer")
    problems.push(`${p}:ProtocolScheme '${scheme}' is not supported (Bearer only)`);
  const extraHeaders = dictionary(flat, `${p}:ExtraHeaderParameters`);
  for (const [h, v] of Object.entries(extraHeaders)) {
    if (!isHeaderName(h)) problems.push(`${p}:ExtraHeaderParameters: '${h}' is not a valid header name`);
    else if (isReservedHeader(h)) problems.push(`${p}:ExtraHeaderParameters: '${h}' is a reserved header`);
    if (!isHeaderValue(v)) problems.push(`${p}:ExtraHeaderParameters:${h} contains a line break`);
  }
  return {
    name,
    relativePath: get(flat, `${p}:RelativePath`) ?? "",
    httpMethod,
    requestAppToken,
    acceptHeader: get(flat, `${p}:AcceptHeader`) || "application/json",
    contentType: get(flat, `${p}:ContentType`) || "application/json",
    extraHeaders,
    extraQuery: dictionary(flat, `${p}:ExtraQueryParameters`),
    acquireTokenOptions: bindAcquireTokenOptions(flat, `${p}:AcquireTokenOptions`, problems),
    ...(baseUrl ? { baseUrl } : {}),
    ...(scopes ? { scopes } : {}),
  };
}

export function bindApis(
  flat: FlatConfig,
  problems: string[],
  warnings: string[],
): Map<string, DownstreamApi> {
  const apis = new Map<string, DownstreamApi>();
  for (const name of children(flat, "DownstreamApis")) {
    if (!/^[A-Za-z0-9._~-]+$/.test(name)) {
      problems.push(
        `DownstreamApis:${name}: API names may use letters, digits and . _ ~ - only (it is a URL path segment)`,
      );
      continue;
    }
    apis.set(name, bindApi(flat, name, problems, warnings));
  }
  return apis;
}

export { bool as bindBool };
