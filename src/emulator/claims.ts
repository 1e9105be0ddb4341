import { createHash } from "node:crypto";
import type { JWTPayload } from "jose";

/** Facet values of xms_act_fct / xms_sub_fct (Entra agent token claims). */
export const FACET_AGENT_IDENTITY = "11";
export const FACET_AGENT_USER = "13";

/** Who the token is issued to (the `azp`). For an agent identity, `parentAppId` is its blueprint. */
export interface ClientFacts {
  appId: string;
  oid: string;
  parentAppId?: string;
}

export interface CommonInput {
  issuer: string;
  tenantId: string;
  audience: string;
  client: ClientFacts;
  /** Seconds since the epoch. */
  now: number;
  lifetimeSeconds: number;
  /** "0" public client, "1" client secret, "2" certificate or assertion (Entra's azpacr). */
  azpacr: "0" | "1" | "2";
  /** Unique token id (Entra's `uti`). */
  uti: string;
}

export interface AppTokenInput extends CommonInput {
  roles: string[];
  /** Set for a blueprint's exchange token T1 requested with fmi_path. */
  fmiPath?: string;
}

export interface UserFacts {
  oid: string;
  upn: string;
  name: string;
  isAgentUser: boolean;
}

export interface UserTokenInput extends CommonInput {
  user: UserFacts;
  scopes: string[];
}

function base(input: CommonInput): JWTPayload & Record<string, unknown> {
  return {
    aud: input.audience,
    iss: input.issuer,
    iat: input.now,
    nbf: input.now,
    exp: input.now + input.lifetimeSeconds,
    azp: input.client.appId,
    azpacr: input.azpacr,
    tid: input.tenantId,
    uti: input.uti,
    ver: "2.0",
  };
}

/** An app-only access token (client credentials), including the agent identity's and T1. */
export function appTokenClaims(input: AppTokenInput): JWTPayload {
  const claims = base(input);
  claims.idtyp = "app";
  claims.oid = input.client.oid;
  claims.sub = input.fmiPath
    ? fmiSubject(input.tenantId, input.client.appId, input.fmiPath)
    : input.client.oid;
  if (input.roles.length > 0) claims.roles = [...input.roles].sort();
  if (input.client.parentAppId) {
    claims.xms_par_app_azp = input.client.parentAppId;
    claims.xms_act_fct = FACET_AGENT_IDENTITY;
    claims.xms_sub_fct = FACET_AGENT_IDENTITY;
  }
  return claims;
}

/** A delegated access token (OBO for a human user, or an agent user's token). */
export function userTokenClaims(input: UserTokenInput): JWTPayload {
  const claims = base(input);
  claims.idtyp = "user";
  claims.oid = input.user.oid;
  claims.sub = pairwiseSubject(input.user.oid, input.client.appId);
  claims.scp = [...input.scopes].sort().join(" ");
  claims.name = input.user.name;
  claims.preferred_username = input.user.upn;
  if (input.client.parentAppId) {
    claims.xms_par_app_azp = input.client.parentAppId;
    claims.xms_act_fct = FACET_AGENT_IDENTITY;
  }
  if (input.user.isAgentUser) claims.xms_sub_fct = FACET_AGENT_USER;
  return claims;
}

/** The OpenID Connect id_token Entra returns beside a delegated token when `openid` was asked for. */
export function idTokenClaims(input: Omit<UserTokenInput, "scopes" | "audience" | "azpacr">): JWTPayload {
  return {
    aud: input.client.appId,
    iss: input.issuer,
    iat: input.now,
    nbf: input.now,
    exp: input.now + input.lifetimeSeconds,
    name: input.user.name,
    oid: input.user.oid,
    preferred_username: input.user.upn,
    sub: pairwiseSubject(input.user.oid, input.client.appId),
    tid: input.tenantId,
    uti: input.uti,
    ver: "2.0",
  };
}

/** Entra's `client_info` response value: base64url JSON of the user's uid and tenant. */
export function clientInfo(userOid: string, tenantId: string): string {
  return Buffer.from(JSON.stringify({ uid: userOid, utid: tenantId })).toString("base64url");
}

/** Entra's `sub` is pairwise: stable for one user and one app, different across apps. */
export function pairwiseSubject(userOid: string, appId: string): string {
  return createHash("sha256")
    .update(`${userOid.toLowerCase()}|${appId.toLowerCase()}`)
    .digest("base64url")
    .slice(0, 43);
}

/**
 * The subject of an FMI exchange token, in the shape Entra reports it in AADSTS7002137:
 * `/eid1/c/pub/t/<tenant GUID bytes>/a/<app GUID bytes>/<fmi path>`, GUIDs in .NET byte order, base64url.
 */
export function fmiSubject(tenantId: string, appId: string, fmiPath: string): string {
  return `/eid1/c/pub/t/${guidBase64Url(tenantId)}/a/${guidBase64Url(appId)}/${fmiPath}`;
}

export function guidBase64Url(guid: string): string {
  const hex = guid.replace(/-/g, "");
  const bytes = Buffer.from(hex, "hex");
  // .NET Guid.ToByteArray: the first three groups are little-endian.
  const dotnet = Buffer.concat([
    Buffer.from(bytes.subarray(0, 4)).reverse(),
    Buffer.from(bytes.subarray(4, 6)).reverse(),
    Buffer.from(bytes.subarray(6, 8)).reverse(),
    bytes.subarray(8),
  ]);
  return dotnet.toString("base64url");
}
