import { authenticateClient, type Params } from "../client-auth.ts";
import type { TokenContext } from "../context.ts";
import type { TenantSpec } from "../directory.ts";
import { EntraError, errors } from "../errors.ts";
import { audiences } from "../own-tokens.ts";
import { TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_RESOURCE } from "../store.ts";
import type { GrantResult } from "./types.ts";
import { issueDelegated, verifyOwnAssertion } from "./user-tokens.ts";

/**
 * `grant_type=user_fic`: an agent identity (authenticated with T1) presents T2, its own exchange token,
 * as `user_federated_identity_credential`, and gets a token for its agent user (`user_id` or `username`).
 */
export async function userFic(ctx: TokenContext, t: TenantSpec, params: Params): Promise<GrantResult> {
  const auth = await authenticateClient(ctx, t, params);
  const { client } = auth;
  if (client.kind !== "agentIdentity") {
    throw new EntraError(
      "unauthorized_client",
      700016,
      `Application '${client.appId}' is not an agent identity; only agent identities can use grant_type user_fic.`,
    );
  }
  const t2 = params.user_federated_identity_credential;
  if (!t2) throw errors.missingParameter("user_federated_identity_credential");
  const userRef = params.user_id ?? params.username;
  if (!userRef) throw errors.missingParameter("user_id");
  const scope = params.scope;
  if (!scope) throw errors.missingParameter("scope");
  const payload = await verifyOwnAssertion(ctx, t, t2, "user_federated_identity_credential");
  const aud = audiences(payload);
  // Entra's exchange tokens carry the exchange app's GUID as `aud` (captures); the URI form is accepted too.
  if (!aud.some((a) => a === TOKEN_EXCHANGE_APP_ID || a === TOKEN_EXCHANGE_RESOURCE))
    throw errors.assertionAudience(aud.join(" "), TOKEN_EXCHANGE_RESOURCE);
  // T2 is the agent's own app token for the exchange audience, not T1 (whose subject is an FMI path).
  if (payload.azp !== client.appId || payload.sub !== client.oid || payload.idtyp !== "app") {
    throw errors.invalidAssertion(
      `The user_federated_identity_credential must be an exchange token issued to the agent identity '${client.appId}' itself.`,
    );
  }
  // Agent users belong to exactly one agent identity; anyone else's user is "not found" for this agent.
  const user = ctx.store.user(t, userRef);
  if (!user || user.agentIdentityAppId?.toLowerCase() !== client.appId.toLowerCase()) {
    throw errors.userNotFound(userRef, t.id);
  }
  return issueDelegated(ctx, t, { client, azpacr: auth.azpacr, user, scope, params, origin: "user_fic" });
}
