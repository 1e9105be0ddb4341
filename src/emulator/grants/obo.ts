import { authenticateClient, type Params } from "../client-auth.ts";
import type { TokenContext } from "../context.ts";
import type { TenantSpec } from "../directory.ts";
import { EntraError, errors } from "../errors.ts";
import { audiences } from "../own-tokens.ts";
import type { GrantResult } from "./types.ts";
import { issueDelegated, verifyOwnAssertion } from "./user-tokens.ts";

/**
 * `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with `requested_token_use=on_behalf_of`:
 * the assertion is a user token whose audience is the middle tier. For an agent identity (authenticated
 * with T1) the middle tier is its blueprint; for any other app it is the app itself.
 */
export async function onBehalfOf(ctx: TokenContext, t: TenantSpec, params: Params): Promise<GrantResult> {
  const auth = await authenticateClient(ctx, t, params);
  if (params.requested_token_use === undefined) throw errors.missingParameter("requested_token_use");
  if (params.requested_token_use !== "on_behalf_of") {
    throw new EntraError(
      "invalid_request",
      900144,
      `The request body must contain the following parameter: 'requested_token_use' with the value 'on_behalf_of' (got '${params.requested_token_use}').`,
    );
  }
  const assertion = params.assertion;
  if (!assertion) throw errors.missingParameter("assertion");
  const scope = params.scope;
  if (!scope) throw errors.missingParameter("scope");
  const payload = await verifyOwnAssertion(ctx, t, assertion, "assertion");
  // idtyp is on every app-only token but on user tokens only when the resource asked (include_user_token),
  // so "not app" is the test, not "user". An app-only assertion: AADSTS7000114 (capture).
  if (payload.idtyp === "app") throw errors.appOnlyOnBehalfOf(auth.client.appId);
  if (typeof payload.oid !== "string" || typeof payload.scp !== "string") {
    throw errors.invalidAssertion("The assertion is not a user token.");
  }
  const middleTier = auth.client.kind === "agentIdentity" ? auth.client.blueprint.appId : auth.client.appId;
  const aud = audiences(payload)[0] ?? "";
  if (ctx.store.resource(t, aud)?.appId.toLowerCase() !== middleTier.toLowerCase()) {
    throw errors.assertionAudience(aud, middleTier);
  }
  const user = ctx.store.user(t, payload.oid);
  if (!user) throw errors.userNotFound(payload.oid, t.id);
  return issueDelegated(ctx, t, {
    client: auth.client,
    azpacr: auth.azpacr,
    user,
    scope,
    params,
    origin: "on_behalf_of",
  });
}
