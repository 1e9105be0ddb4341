/** Small parsers shared by configuration binding and query-override parsing. */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i;
const META_TENANTS = new Set(["common", "organizations", "consumers"]);

export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/** A tenant id (GUID) or a verified domain such as `contoso.onmicrosoft.com`. */
export function isTenant(value: string): boolean {
  return isGuid(value) || DOMAIN.test(value);
}

export function isMetaTenant(value: string): boolean {
  return META_TENANTS.has(value.toLowerCase());
}

/** .NET's bool.Parse: `true`/`false` in any casing, surrounding spaces allowed. */
export function parseBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === "true") return true;
  if (v === "false") return false;
  return undefined;
}

/** HTTP methods accepted for the downstream call (Microsoft's `HttpMethod` names in any casing). */
export const HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const;

export function parseHttpMethod(value: string): string | undefined {
  const upper = value.trim().toUpperCase();
  return (HTTP_METHODS as readonly string[]).includes(upper) ? upper : undefined;
}

/** Header names the sidecar never lets configuration or a caller set on a downstream call. */
export function isReservedHeader(name: string): boolean {
  const n = name.toLowerCase();
  return (
    n === "authorization" ||
    n === "cookie" ||
    n === "host" ||
    n === "x-original-url" ||
    n === "content-length" ||
    n === "transfer-encoding" ||
    n.startsWith("x-ms-client-principal") ||
    n.startsWith("x-forwarded-") ||
    n.startsWith("x-ms-token-")
  );
}

/** RFC 7230 token characters: what a header name may contain. */
export function isHeaderName(name: string): boolean {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name);
}

/** Header values may not carry CR, LF or NUL (request splitting). */
export function isHeaderValue(value: string): boolean {
  return !/[\r\n\0]/.test(value);
}

/** Splits Microsoft's space-separated scope strings; empty parts are dropped. */
export function splitScopes(value: string): string[] {
  return value.split(/\s+/).filter((s) => s !== "");
}
