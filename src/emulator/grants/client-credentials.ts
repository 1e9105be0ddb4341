import { randomBytes } from "node:crypto";
import { appTokenClaims } from "../claims.ts";
import { authenticateClient, type Params } from "../client-auth.ts";
import { type TokenContext, tokenIssuer } from "../context.ts";
import type { TenantSpec } from "../directory.ts";
import { errors } from "../errors.ts";
import { parseScope, resolveResource } from "../scopes.ts";
import { TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_RESOURCE } from "../store.ts";
import { tokenSettings } from "../token-shape.ts";
import type { GrantResult } from "./types.ts";

/**
 * `grant_type=client_credentials`: app-only tokens, including the agent flows: a blueprint asking for
 * `api://AzureADTokenExchange/.default` with `fmi_path=<agent id>` gets T1, and an agent identity
 * authenticated by T1 gets its own app token (or T2, its exchange token, for the agent-user flow).
 */
export async function clientCredentials(
  ctx: TokenContext,
  t: TenantSpec,
  params: Params,
): Promise<GrantResult> {
  const auth = await authenticateClient(ctx, t, params);
  const { client } = auth;
  const scope = params.scope;
  if (!scope) throw errors.missingParameter("scope");
  const req = parseScope(scope);
  if (!req.isDefault) throw errors.clientCredentialsNeedDefault(scope);
  const resource = resolveResource(ctx.store, t, req);
  const fmiPath = params.fmi_path;
  let fmiAgentId: string | undefined;
  if (fmiPath !== undefined) {
    if (resource.appId !== TOKEN_EXCHANGE_APP_ID) {
      throw errors.invalidScope(scope, `fmi_path may only be used with ${TOKEN_EXCHANGE_RESOURCE}/.default.`);
    }
    const agent = client.kind === "agentIdentityBlueprint" ? ctx.store.client(t, fmiPath) : undefined;
    if (agent?.kind !== "agentIdentity" || agent.blueprint.appId !== client.appId) {
      throw errors.fmiPathNotAllowed(fmiPath, client.appId);
    }
    fmiAgentId = agent.appId;
  }
  const roles = resource.appId === TOKEN_EXCHANGE_APP_ID ? [] : ctx.store.appRoles(t, client, resource);
  const now = ctx.now();
  const lifetime = ctx.settings.accessTokenLifetimeSeconds;
  const shape = tokenSettings(resource, req.resource);
  const claims = appTokenClaims({
    issuer: tokenIssuer(ctx.baseUrl, t.id, shape.version),
    tenantId: t.id,
    resource: shape,
    variation: ctx.nextVariation(),
    client: {
      appId: client.appId,
      oid: client.oid,
      ...(client.kind === "agentIdentity" ? { parentAppId: client.blueprint.appId } : {}),
      ...(client.kind === "agentIdentityBlueprint" ? { isBlueprint: true } : {}),
    },
    now,
    lifetimeSeconds: lifetime,
    azpacr: auth.azpacr,
    uti: randomBytes(16).toString("base64url"),
    roles,
    ...(fmiAgentId !== undefined ? { fmiPath: fmiAgentId } : {}),
  });
  const accessToken = await ctx.keys.sign(t.id, claims);
  return {
    body: { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken },
    log: {
      clientId: client.appId,
      clientKind: client.kind,
      auth: auth.method,
      audience: shape.audience,
      tokenVersion: shape.version,
      roles,
      ...(fmiPath !== undefined ? { fmiPath } : {}),
    },
  };
}
