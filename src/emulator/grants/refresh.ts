import { authenticateClient, type Params } from "../client-auth.ts";
import type { TokenContext } from "../context.ts";
import type { TenantSpec } from "../directory.ts";
import { errors } from "../errors.ts";
import type { GrantResult } from "./types.ts";
import { issueDelegated } from "./user-tokens.ts";

/**
 * `grant_type=refresh_token`: the confidential client authenticates again (for an agent identity, with
 * T1) and redeems a refresh token it was issued; the grants are checked again, so a revoked grant stops
 * refreshes. `scope` may name another resource, as Entra's refresh tokens are multi-resource.
 */
export async function refreshToken(ctx: TokenContext, t: TenantSpec, params: Params): Promise<GrantResult> {
  const auth = await authenticateClient(ctx, t, params);
  const token = params.refresh_token;
  if (!token) throw errors.missingParameter("refresh_token");
  const record = ctx.refreshTokens.get(token);
  if (!record || record.tenantId !== t.id) throw errors.invalidRefreshToken();
  if (record.clientAppId.toLowerCase() !== auth.client.appId.toLowerCase())
    throw errors.refreshTokenWrongClient();
  if (record.expiresAt < ctx.now()) throw errors.refreshTokenExpired();
  const user = ctx.store.user(t, record.userOid);
  if (!user) throw errors.userNotFound(record.userOid, t.id);
  const scope = params.scope ?? record.scope;
  const withOffline = /(^|\s)offline_access(\s|$)/.test(scope) ? scope : `${scope} offline_access`;
  const result = await issueDelegated(ctx, t, {
    client: auth.client,
    azpacr: auth.azpacr,
    user,
    scope: withOffline,
    params,
    origin: record.origin,
  });
  return { ...result, log: { ...result.log, refreshedFrom: record.origin } };
}
