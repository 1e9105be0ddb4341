import { randomBytes } from "node:crypto";
import { clientInfo, idTokenClaims, type UserFacts, userTokenClaims } from "../claims.ts";
import type { Params } from "../client-auth.ts";
import { issuerOf, type TokenContext, tokenIssuer } from "../context.ts";
import type { TenantSpec, UserSpec } from "../directory.ts";
import { errors } from "../errors.ts";
import { decodeUntrusted, ownIssuerTenant, ownSignatureValid } from "../own-tokens.ts";
import { delegatedScopes, parseScope, resolveResource } from "../scopes.ts";
import type { Client } from "../store.ts";
import { tokenSettings } from "../token-shape.ts";
import type { GrantResult } from "./types.ts";

export interface DelegatedRequest {
  client: Client;
  azpacr: "1" | "2";
  user: UserSpec & { agentIdentityAppId?: string };
  scope: string;
  params: Params;
  origin: "on_behalf_of" | "user_fic";
}

/**
 * Issues a delegated token for a user (OBO, agent user, refresh): checks the scopes against the resource
 * and the grants, adds an id_token when `openid` was asked, client_info when the client sent
 * `client_info=1`, and a refresh token only when `offline_access` was asked (as Entra does).
 */
export async function issueDelegated(
  ctx: TokenContext,
  t: TenantSpec,
  req: DelegatedRequest,
): Promise<GrantResult> {
  const scopeReq = parseScope(req.scope);
  const resource = resolveResource(ctx.store, t, scopeReq);
  const granted = delegatedScopes(ctx.store, t, req.client, req.user.objectId, scopeReq, resource);
  const now = ctx.now();
  const lifetime = ctx.settings.accessTokenLifetimeSeconds;
  const shape = tokenSettings(resource, scopeReq.resource);
  const client = {
    appId: req.client.appId,
    oid: req.client.oid,
    ...(req.client.kind === "agentIdentity" ? { parentAppId: req.client.blueprint.appId } : {}),
  };
  const user: UserFacts = {
    oid: req.user.objectId,
    upn: req.user.userPrincipalName,
    name: req.user.displayName ?? req.user.userPrincipalName,
    isAgentUser: req.user.agentIdentityAppId !== undefined,
  };
  const common = { tenantId: t.id, client, now, lifetimeSeconds: lifetime, user };
  const accessToken = await ctx.keys.sign(
    t.id,
    userTokenClaims({
      ...common,
      issuer: tokenIssuer(ctx.baseUrl, t.id, shape.version),
      resource: shape,
      variation: ctx.nextVariation(),
      azpacr: req.azpacr,
      scopes: granted,
      uti: uti(),
    }),
  );
  const prefix = scopeReq.resource.replace(/\/+$/, "");
  const oidc = [...scopeReq.oidc].filter((s) => s !== "email" || scopeReq.oidc.has("openid"));
  const body: GrantResult["body"] = {
    token_type: "Bearer",
    scope: [...granted.map((s) => `${prefix}/${s}`), ...oidc].join(" "),
    expires_in: lifetime,
    ext_expires_in: lifetime,
    access_token: accessToken,
  };
  if (scopeReq.oidc.has("offline_access")) {
    body.refresh_token = ctx.refreshTokens.issue(
      {
        tenantId: t.id,
        clientAppId: req.client.appId,
        userOid: user.oid,
        origin: req.origin,
        scope: req.scope,
      },
      now,
    );
  }
  if (scopeReq.oidc.has("openid"))
    body.id_token = await ctx.keys.sign(
      t.id,
      idTokenClaims({ ...common, issuer: issuerOf(ctx.baseUrl, t.id), uti: uti() }),
    );
  if (req.params.client_info === "1") body.client_info = clientInfo(user.oid, t.id);
  return {
    body,
    log: {
      clientId: req.client.appId,
      clientKind: req.client.kind,
      userOid: user.oid,
      agentUser: user.isAgentUser,
      audience: shape.audience,
      tokenVersion: shape.version,
      scopes: granted,
      refreshToken: body.refresh_token !== undefined,
    },
  };
}

/**
 * Checks a user-side assertion that must be one of this emulator's own tokens (the OBO user token, the
 * agent's T2): signature, time, and that it was issued in this tenant. Returns its claims.
 */
export async function verifyOwnAssertion(ctx: TokenContext, t: TenantSpec, token: string, what: string) {
  const jwt = decodeUntrusted(token, what);
  if (jwt.header.alg !== "RS256") throw errors.unsupportedSigningAlgorithm(String(jwt.header.alg ?? "none"));
  // v1 (sts.windows.net) and v2 tokens of this tenant alike.
  if (ownIssuerTenant(ctx.baseUrl, jwt.payload.iss)?.toLowerCase() !== t.id) {
    throw errors.invalidAssertion(`The ${what} was not issued by this tenant's token service.`);
  }
  if (!(await ownSignatureValid(ctx.keys, t.id, token))) {
    throw errors.invalidAssertion("The provided signature value did not match the expected signature value.");
  }
  const now = ctx.now();
  const { exp, nbf } = jwt.payload;
  if (typeof exp !== "number" || exp < now || (typeof nbf === "number" && nbf > now + 300)) {
    throw errors.userAssertionTimeRange();
  }
  return jwt.payload;
}

function uti(): string {
  return randomBytes(16).toString("base64url");
}
