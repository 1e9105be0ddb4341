import type { TenantSpec } from "./directory.ts";
import { errors } from "./errors.ts";
import type { Client, DirectoryStore, Resource } from "./store.ts";

const OIDC_SCOPES = new Set(["openid", "profile", "email", "offline_access"]);
/** Scopes without a resource prefix belong to Microsoft Graph, as in Entra. */
const DEFAULT_RESOURCE = "https://graph.microsoft.com";

export interface ScopeRequest {
  /** The resource identifier as written (URI or app id). */
  resource: string;
  /** Scope values without the resource prefix; `.default` included when asked. */
  values: string[];
  isDefault: boolean;
  /** OpenID Connect scopes asked for beside the resource (openid, profile, email, offline_access). */
  oidc: Set<string>;
}

/** Splits Entra's `scope` parameter into one resource and its scopes (pure). */
export function parseScope(scope: string): ScopeRequest {
  const items = scope.split(/\s+/).filter((s) => s.length > 0);
  const oidc = new Set<string>();
  // Keyed by lower-case resource; keeps the request's spelling for error messages.
  const byResource = new Map<string, { resource: string; values: string[] }>();
  for (const item of items) {
    if (OIDC_SCOPES.has(item.toLowerCase())) {
      oidc.add(item.toLowerCase());
      continue;
    }
    const cut = item.lastIndexOf("/");
    const [resource, value] = cut > 0 ? [item.slice(0, cut), item.slice(cut + 1)] : [DEFAULT_RESOURCE, item];
    if (value.length === 0) throw errors.invalidScope(item);
    const key = resource.toLowerCase();
    const entry = byResource.get(key) ?? { resource, values: [] };
    entry.values.push(value);
    byResource.set(key, entry);
  }
  if (byResource.size > 1) throw errors.multipleResources();
  const [entry] = [...byResource.values()];
  if (!entry) throw errors.invalidScope(scope, "A scope for a resource is required.");
  const isDefault = entry.values.includes(".default");
  if (isDefault && entry.values.length > 1) {
    throw errors.invalidScope(scope, "The .default scope can't be combined with resource-specific scopes.");
  }
  return { resource: entry.resource, values: entry.values, isDefault, oidc };
}

/** Resolves the resource of a request, or fails with AADSTS500011. */
export function resolveResource(store: DirectoryStore, t: TenantSpec, req: ScopeRequest): Resource {
  const resource = store.resource(t, req.resource);
  if (!resource) throw errors.resourceNotFound(req.resource, t.id);
  return resource;
}

/**
 * The delegated scopes a token gets: every requested scope must exist on the resource (AADSTS70011) and
 * be granted to the client for this user (AADSTS65001); `.default` means all granted scopes.
 */
export function delegatedScopes(
  store: DirectoryStore,
  t: TenantSpec,
  client: Client,
  userOid: string,
  req: ScopeRequest,
  resource: Resource,
): string[] {
  const granted = store.delegatedScopes(t, client, userOid, resource);
  if (req.isDefault) {
    if (granted.length === 0) throw errors.consentRequired(client.appId, client.displayName);
    return granted;
  }
  for (const value of req.values) {
    if (!(resource.scopes ?? []).includes(value)) throw errors.invalidScope(`${req.resource}/${value}`);
  }
  const missing = req.values.filter((v) => !granted.includes(v));
  if (missing.length > 0) throw errors.consentRequired(client.appId, client.displayName);
  return req.values;
}
