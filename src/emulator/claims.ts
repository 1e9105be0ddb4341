import { createHash, randomBytes } from "node:crypto";
import type { JWTPayload } from "jose";

/**
 * The claims of the tokens the emulator issues, as Entra shapes them. Every claim set here is sourced in
 * docs/emulator.md ("Token shapes"); golden samples of Entra's own tokens are in test/fixtures/entra/ and
 * src/emulator/golden.test.ts compares these builders with them. Pure functions: the caller passes the
 * time, ids and a variation counter, so a test can pin every value.
 */

/** Facet values of xms_act_fct / xms_sub_fct (Learn, agent-token-claims). */
export const FACET_AGENT_IDENTITY = 11;
export const FACET_AGENT_USER = 13;

/** Who the token is issued to (the `azp`/`appid`). */
export interface ClientFacts {
  appId: string;
  /** The client's service principal id (for an agent identity: its app id, as Learn says). */
  oid: string;
  /** For an agent identity: its blueprint (`xms_par_app_azp`). */
  parentAppId?: string;
  /** A blueprint (its exchange tokens carry the blueprint facets of the captures). */
  isBlueprint?: boolean;
}

/** What the resource decides about its tokens (Entra: the resource owns the access token). */
export interface ResourceTokenSettings {
  /** `requestedAccessTokenVersion`: Entra's default (null) is 1. */
  version: 1 | 2;
  /** The `aud` to write. */
  audience: string;
  /** `idtyp` optional claim with `include_user_token`: idtyp also on user tokens. */
  idtypOnUserTokens: boolean;
  /** The facet optional claims (xms_act_fct, xms_sub_fct, xms_tnt_fct, xms_idrel) on non-agent tokens. */
  facetClaims: boolean;
  /** The token exchange resource (api://AzureADTokenExchange): T1/T2 facets of the captures. */
  isExchange: boolean;
}

export interface CommonInput {
  /** The issuer for this token's version (see context.ts tokenIssuer). */
  issuer: string;
  tenantId: string;
  resource: ResourceTokenSettings;
  client: ClientFacts;
  /** Seconds since the epoch. */
  now: number;
  lifetimeSeconds: number;
  /** "0" public client, "1" client secret, "2" certificate or assertion (Entra's azpacr/appidacr). */
  azpacr: "0" | "1" | "2";
  /** Unique token id (Entra's `uti`). */
  uti: string;
  /**
   * Changes from token to token (a counter): picks the order of multi-valued claims and whether an agent's
   * app-only token carries `scp: "/"`, so code that assumes one order or one form fails here too.
   */
  variation: number;
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

/** Opaque claims every Entra access token carries (`aio`, `rh`, `xms_ftd`); their content is Entra's own. */
function opaque(bytes: number): string {
  return randomBytes(bytes).toString("base64url");
}

function base(input: CommonInput): JWTPayload & Record<string, unknown> {
  const v1 = input.resource.version === 1;
  const claims: JWTPayload & Record<string, unknown> = {
    aud: input.resource.audience,
    iss: input.issuer,
    iat: input.now,
    nbf: input.now,
    exp: input.now + input.lifetimeSeconds,
    aio: opaque(36),
  };
  if (v1) {
    claims.appid = input.client.appId;
    claims.appidacr = input.azpacr;
  } else {
    claims.azp = input.client.appId;
    claims.azpacr = input.azpacr;
  }
  claims.rh = `1.${opaque(40)}.`;
  claims.tid = input.tenantId;
  claims.uti = input.uti;
  claims.ver = v1 ? "1.0" : "2.0";
  claims.xms_ftd = opaque(44);
  return claims;
}

/**
 * Space-separated facet values in an order that changes with `variation`: Learn's own sample has
 * "3 9 11" and "9 3 11" in one token ("don't assume any order").
 */
export function facetValue(values: number[], variation: number): string {
  const n = values.length;
  if (n === 0) return "";
  const shift = variation % n;
  const rotated = [...values.slice(shift), ...values.slice(0, shift)];
  return (Math.floor(variation / n) % 2 === 1 ? rotated.reverse() : rotated).join(" ");
}

interface Facets {
  act: number[];
  sub: number[];
  tnt?: number[];
  idrel: number[];
}

/** The facet claims of an app-only token, or undefined when the token carries none (sources in docs). */
function appFacets(input: AppTokenInput): Facets | undefined {
  const { client, resource } = input;
  if (client.parentAppId) {
    // T2 capture (exchange audience): "11 9 1" / "9 1 11", idrel "7 28"; Learn's sample: "3 9 11", tnt "3 9", idrel "7 10".
    return resource.isExchange
      ? { act: [11, 9, 1], sub: [9, 1, 11], idrel: [7, 28] }
      : { act: [3, 9, FACET_AGENT_IDENTITY], sub: [9, 3, FACET_AGENT_IDENTITY], tnt: [3, 9], idrel: [7, 10] };
  }
  // T1 capture: "1 9" / "1 9", idrel "7 26".
  if (resource.isExchange) return { act: [1, 9], sub: [1, 9], idrel: [7, 26] };
  // Bot Framework capture of an ordinary app token: "3 9" / "3 9", idrel "7 14".
  if (resource.facetClaims) return { act: [3, 9], sub: [3, 9], idrel: [7, 14] };
  return undefined;
}

function userFacets(input: UserTokenInput): Facets | undefined {
  const isAgent = input.client.parentAppId !== undefined;
  if (!isAgent && !input.resource.facetClaims) return undefined;
  // Captures of Graph tokens (test/fixtures/entra): an agent user's "3 11 9" / "3 13", tnt "3 6", idrel
  // "1 32"; an agent's OBO for a human "3 9 11" / "3 10", tnt "3 8", idrel "18 1"; an ordinary client's
  // OBO "3 9" / "3 6", tnt "3 16", idrel "1 16". Learn: 11 marks the agent actor, 13 the agent user.
  if (input.user.isAgentUser)
    return { act: [3, FACET_AGENT_IDENTITY, 9], sub: [3, FACET_AGENT_USER], tnt: [3, 6], idrel: [1, 32] };
  if (isAgent) return { act: [3, 9, FACET_AGENT_IDENTITY], sub: [3, 10], tnt: [3, 8], idrel: [18, 1] };
  return { act: [3, 9], sub: [3, 6], tnt: [3, 16], idrel: [1, 16] };
}

function addFacets(claims: Record<string, unknown>, facets: Facets | undefined, variation: number): void {
  if (!facets) return;
  claims.xms_act_fct = facetValue(facets.act, variation);
  claims.xms_sub_fct = facetValue(facets.sub, variation + 1);
  if (facets.tnt) claims.xms_tnt_fct = facetValue(facets.tnt, variation);
  claims.xms_idrel = facetValue(facets.idrel, variation);
}

/** An app-only access token (client credentials), including the agent identity's, T1 and T2. */
export function appTokenClaims(input: AppTokenInput): JWTPayload {
  const claims = base(input);
  if (input.resource.version === 1) claims.idp = input.issuer;
  // idtyp is on app-only tokens by default (optional-claims-reference).
  claims.idtyp = "app";
  claims.oid = input.client.oid;
  claims.sub = input.fmiPath
    ? fmiSubject(input.tenantId, input.client.appId, input.fmiPath)
    : input.client.oid;
  if (input.roles.length > 0) claims.roles = [...input.roles].sort();
  // Learn: an autonomous agent's token has `scp` "empty or `/`"; the captures and Learn's sample have none.
  // Both forms appear, alternating.
  if (input.client.parentAppId && !input.resource.isExchange && input.variation % 2 === 1) claims.scp = "/";
  addFacets(claims, appFacets(input), input.variation);
  if (input.client.parentAppId) claims.xms_par_app_azp = input.client.parentAppId;
  return claims;
}

/** A delegated access token (OBO for a human user, or an agent user's token). */
export function userTokenClaims(input: UserTokenInput): JWTPayload {
  const claims = base(input);
  const v1 = input.resource.version === 1;
  // v1 only (the v2 capture has neither): a human's sign-in has acr "1" and amr, an agent user's token
  // acr "0" and no amr (captures).
  if (v1) {
    claims.acr = input.user.isAgentUser ? "0" : "1";
    if (!input.user.isAgentUser) claims.amr = ["pwd"];
  }
  if (input.resource.idtypOnUserTokens) claims.idtyp = "user";
  claims.name = input.user.name;
  claims.oid = input.user.oid;
  if (!v1) claims.preferred_username = input.user.upn;
  claims.scp = [...input.scopes].sort().join(" ");
  claims.sub = pairwiseSubject(input.user.oid, input.client.appId);
  if (v1) {
    claims.unique_name = input.user.upn;
    claims.upn = input.user.upn;
  }
  addFacets(claims, userFacets(input), input.variation);
  if (input.client.parentAppId) claims.xms_par_app_azp = input.client.parentAppId;
  return claims;
}

/** The OpenID Connect id_token Entra returns beside a delegated token when `openid` was asked for. */
export function idTokenClaims(input: {
  issuer: string;
  tenantId: string;
  client: ClientFacts;
  now: number;
  lifetimeSeconds: number;
  user: UserFacts;
  uti: string;
}): JWTPayload {
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
 * The subject of an FMI exchange token, in the shape Entra reports it in AADSTS7002137 and the T1 capture:
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

/** Space-separated multi-valued claims (facets, xms_idrel) as numbers, in no particular order. */
export function facetSet(value: unknown): Set<number> {
  return new Set(
    (typeof value === "string" ? value.split(" ") : []).filter((v) => v !== "").map((v) => Number(v)),
  );
}
