import { createHash, randomUUID } from "node:crypto";
import type { KeyCredentialSpec } from "./key-credentials.ts";

/**
 * The emulated directory: what a developer writes in YAML/JSON and what the admin API accepts.
 * Optional ids are filled in deterministically from the required ones, so a file stays short and a
 * restart gives the same object ids.
 */
export interface DirectorySpec {
  tenants: TenantSpec[];
}

export interface TenantSpec {
  /** Tenant id, a GUID (the `tid` claim). */
  id: string;
  /** Domain names usable in place of the id in URLs (`contoso.onmicrosoft.com`). */
  domains?: string[];
  displayName?: string;
  applications?: ApplicationSpec[];
  agentIdentities?: AgentIdentitySpec[];
  users?: UserSpec[];
  agentUsers?: AgentUserSpec[];
  resources?: ResourceSpec[];
  grants?: GrantSpec[];
}

/** What makes an app callable: its identifier URIs, the `aud` its tokens carry, its roles and scopes. */
export interface ResourceFields {
  identifierUris?: string[];
  /** The `aud` claim of tokens for this resource; default the app id (as Entra's v2 tokens). */
  audience?: string;
  /** App roles (application permissions), e.g. `Application.ReadWrite.All`. */
  appRoles?: string[];
  /** Delegated permission scopes, e.g. `User.Read`. */
  scopes?: string[];
  /**
   * Graph's `api.requestedAccessTokenVersion`: the version of the tokens issued for this resource. Entra's
   * default (null) is 1, and Microsoft Graph's tokens are v1 (access-token-claims-reference).
   */
  requestedAccessTokenVersion?: 1 | 2 | null;
  /** Graph's `optionalClaims` (access token part only): `idtyp`, `aud`, the agent facet claims. */
  optionalClaims?: { accessToken?: OptionalClaimSpec[] };
}

/** One optional claim the resource asks for (Learn optional-claims-reference). */
export interface OptionalClaimSpec {
  name: string;
  /** `include_user_token` for idtyp, `use_guid` for aud. */
  additionalProperties?: string[];
}

/**
 * Graph's inheritablePermission on a blueprint: which of the blueprint's granted scopes and app roles on one
 * resource its agent identities inherit (Learn, concept-inheritable-permissions).
 */
export interface InheritablePermissionSpec {
  /** The resource's app id (or identifier URI). */
  resourceAppId: string;
  inheritableScopes?: { kind: "allAllowed" | "enumerated" | "none"; scopes?: string[] };
  inheritableRoles?: { kind: "allAllowed" | "none" };
}

export interface ClientSecretSpec {
  displayName?: string;
  value: string;
  /** ISO date after which the secret no longer works. */
  expiresAt?: string;
}

export interface FederatedCredentialSpec {
  id?: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
  description?: string;
}

export interface ApplicationSpec extends ResourceFields {
  appId: string;
  /** The application object id (Graph addresses applications by it). */
  objectId?: string;
  /** The service principal id: the `oid` of its app tokens. */
  servicePrincipalId?: string;
  displayName?: string;
  /** `managedIdentity`: its tokens may serve as federated credentials of other apps (Entra's MI-as-FIC). */
  kind?: "application" | "agentIdentityBlueprint" | "managedIdentity";
  clientSecrets?: ClientSecretSpec[];
  federatedIdentityCredentials?: FederatedCredentialSpec[];
  /** Certificates whose private keys may sign the app's client assertions (Graph's keyCredentials). */
  keyCredentials?: KeyCredentialSpec[];
  /**
   * App ids of the applications that own this one (Graph's owners): a caller with only
   * Application.ReadWrite.OwnedBy may change the applications it owns and no other.
   */
  owners?: string[];
  /** Blueprints only: the permissions their agent identities inherit, per resource. */
  inheritablePermissions?: InheritablePermissionSpec[];
}

export interface AgentIdentitySpec {
  appId: string;
  /** Always the app id: an agent identity's object id and app id are the same value (Learn, agent-identities). */
  servicePrincipalId?: string;
  displayName?: string;
  /** The parent agent identity blueprint's app id. */
  blueprintAppId: string;
  /** The app that created it through Graph (createdByAppId), when it was created that way. */
  createdByAppId?: string;
  /** Graph's servicePrincipal `tags`: free strings, e.g. the marker of the controller that created it. */
  tags?: string[];
}

export interface UserSpec {
  objectId: string;
  userPrincipalName: string;
  displayName?: string;
}

export interface AgentUserSpec extends UserSpec {
  /** The agent identity this agent user belongs to (Graph's identityParentId). */
  agentIdentityAppId: string;
}

export interface ResourceSpec extends ResourceFields {
  appId: string;
  servicePrincipalId?: string;
  displayName?: string;
}

/** An app role assignment (application permission) or an OAuth2 permission grant (delegated). */
export type GrantSpec =
  | { type: "application"; clientAppId: string; resource: string; roles: string[] }
  | { type: "delegated"; clientAppId: string; resource: string; scopes: string[]; principalId?: string };

export const MAX_FEDERATED_CREDENTIALS = 20;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/** A stable GUID derived from a seed, for ids a directory file leaves out. */
export function derivedGuid(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function randomGuid(): string {
  return randomUUID();
}

export class DirectoryError extends Error {
  override name = "DirectoryError";
}

export function federatedCredentialProblem(f: unknown): string | undefined {
  if (!isObject(f)) return "must be an object";
  if (typeof f.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$/.test(f.name)) {
    return "name must be 3-120 characters: letters, digits, '-' and '_', starting with a letter or digit";
  }
  if (typeof f.issuer !== "string" || !/^https:\/\/[^\s]+$/.test(f.issuer))
    return "issuer must be an https URL";
  if (typeof f.subject !== "string" || f.subject.length === 0 || f.subject.length > 600) {
    return "subject must be 1-600 characters";
  }
  if (!isStringList(f.audiences) || f.audiences.length !== 1 || (f.audiences[0] ?? "").length === 0) {
    return "audiences must hold exactly one value (usually api://AzureADTokenExchange)";
  }
  if (f.description !== undefined && typeof f.description !== "string") return "description must be a string";
  return undefined;
}

/** Finds an app, resource or blueprint by app id, identifier URI or `api://<appId>`. */
export function findResourceFields(
  t: TenantSpec,
  identifier: string,
): (ResourceFields & { appId: string; displayName?: string; servicePrincipalId?: string }) | undefined {
  const wanted = identifier.replace(/\/+$/, "").toLowerCase();
  const all = [...(t.resources ?? []), ...(t.applications ?? [])];
  return all.find(
    (r) =>
      String(r.appId).toLowerCase() === wanted ||
      `api://${String(r.appId).toLowerCase()}` === wanted ||
      (r.identifierUris ?? []).some((u) => u.replace(/\/+$/, "").toLowerCase() === wanted),
  );
}

export function isObject(value: unknown): value is Record<string, unknown> & object {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}
