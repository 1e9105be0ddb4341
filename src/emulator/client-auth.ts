import { timingSafeEqual } from "node:crypto";
import { checkCertificateAssertion, isOwnAssertion } from "./certificate-auth.ts";
import { fmiSubject } from "./claims.ts";
import { issuerOf, type TokenContext } from "./context.ts";
import type { TenantSpec } from "./directory.ts";
import { errors } from "./errors.ts";
import { ASYMMETRIC_ALGORITHMS, FederationError } from "./federation.ts";
import {
  audiences,
  type DecodedJwt,
  decodeUntrusted,
  ownSignatureValid,
  ownV2IssuerTenant,
} from "./own-tokens.ts";
import { type Client, TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_RESOURCE } from "./store.ts";

export const JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** Entra tolerates five minutes of clock skew on assertions. */
export const CLOCK_SKEW_SECONDS = 300;

export type Params = Record<string, string | undefined>;

export interface AuthenticatedClient {
  client: Client;
  /** Entra's azpacr: "1" secret, "2" assertion. */
  azpacr: "1" | "2";
  /** How the client proved itself, for the log. */
  method: "client_secret" | "client_certificate" | "federated_assertion" | "agent_exchange_token";
}

/**
 * Authenticates the client of a token request the way Entra does: a client secret, a federated assertion
 * matched against the app's federated identity credentials and verified against the issuer's keys, or,
 * for an agent identity, the exchange token T1 its parent blueprint got with fmi_path = the agent's id.
 */
export async function authenticateClient(
  ctx: TokenContext,
  t: TenantSpec,
  params: Params,
): Promise<AuthenticatedClient> {
  const clientId = params.client_id;
  if (!clientId) throw errors.missingParameter("client_id");
  const client = ctx.store.client(t, clientId);
  if (!client) throw errors.applicationNotFound(clientId, t.id);
  if (params.client_secret !== undefined && params.client_assertion === undefined) {
    if (client.kind === "agentIdentity" || !secretMatches(client, params.client_secret, ctx.now())) {
      throw errors.invalidClientSecret(client.appId);
    }
    return { client, azpacr: "1", method: "client_secret" };
  }
  const assertion = params.client_assertion;
  if (assertion === undefined) throw errors.missingClientCredentials();
  if (params.client_assertion_type !== JWT_BEARER_ASSERTION_TYPE) {
    if (params.client_assertion_type === undefined) throw errors.missingParameter("client_assertion_type");
    throw errors.invalidAssertionType(params.client_assertion_type);
  }
  const jwt = decodeUntrusted(assertion, "client_assertion");
  checkAlgorithmAndTime(jwt, ctx.now());
  if (client.kind === "agentIdentity") {
    await checkAgentExchangeToken(ctx, t, client, assertion, jwt);
    return { client, azpacr: "2", method: "agent_exchange_token" };
  }
  if (isOwnAssertion(jwt)) {
    await checkCertificateAssertion(ctx, t, client, assertion, jwt);
    checkReplay(ctx, String(jwt.payload.iss), jwt);
    return { client, azpacr: "2", method: "client_certificate" };
  }
  await checkFederatedAssertion(ctx, client, assertion, jwt);
  return { client, azpacr: "2", method: "federated_assertion" };
}

function secretMatches(client: Client, given: string, now: number): boolean {
  if (client.kind === "agentIdentity") return false;
  const givenBytes = Buffer.from(given);
  return (client.app.clientSecrets ?? []).some((s) => {
    if (s.expiresAt !== undefined && Date.parse(s.expiresAt) / 1000 < now) return false;
    const expected = Buffer.from(s.value);
    return expected.length === givenBytes.length && timingSafeEqual(expected, givenBytes);
  });
}

function checkAlgorithmAndTime(jwt: DecodedJwt, now: number): void {
  const alg = typeof jwt.header.alg === "string" ? jwt.header.alg : "none";
  if (!ASYMMETRIC_ALGORITHMS.includes(alg)) throw errors.unsupportedSigningAlgorithm(alg);
  const { exp, nbf } = jwt.payload;
  if (typeof exp !== "number") throw errors.malformedJwt("the client_assertion has no 'exp' claim");
  if (exp + CLOCK_SKEW_SECONDS < now || (typeof nbf === "number" && nbf - CLOCK_SKEW_SECONDS > now)) {
    throw errors.assertionTimeRange(now, nbf, exp);
  }
}

/** Leg 2: the agent identity's credential is T1 from its own parent blueprint, for its own id. */
async function checkAgentExchangeToken(
  ctx: TokenContext,
  t: TenantSpec,
  client: Extract<Client, { kind: "agentIdentity" }>,
  token: string,
  jwt: DecodedJwt,
): Promise<void> {
  const issuer = String(jwt.payload.iss ?? "");
  if (issuer !== issuerOf(ctx.baseUrl, t.id)) throw errors.noFicForIssuer(issuer);
  if (!(await ownSignatureValid(ctx.keys, t.id, token))) {
    throw errors.assertionSignature(
      "The provided signature value did not match the expected signature value.",
    );
  }
  const aud = audiences(jwt.payload);
  // T1's `aud` is the exchange app's GUID in Entra's tokens (captures); the URI form is accepted too.
  if (!aud.some((a) => a === TOKEN_EXCHANGE_APP_ID || a === TOKEN_EXCHANGE_RESOURCE))
    throw errors.noFicForAudience(aud.join(" "));
  const expected = fmiSubject(t.id, client.blueprint.appId, client.appId);
  if (jwt.payload.sub !== expected) throw errors.noFicForSubject(String(jwt.payload.sub ?? ""));
}

/** An ordinary app or blueprint: the assertion must match one of its federated identity credentials. */
async function checkFederatedAssertion(
  ctx: TokenContext,
  client: Exclude<Client, { kind: "agentIdentity" }>,
  token: string,
  jwt: DecodedJwt,
): Promise<void> {
  const issuer = String(jwt.payload.iss ?? "");
  const subject = String(jwt.payload.sub ?? "");
  const fics = (client.app.federatedIdentityCredentials ?? []).filter((f) => f.issuer === issuer);
  if (fics.length === 0) throw errors.noFicForIssuer(issuer);
  const bySubject = fics.filter((f) => f.subject === subject);
  if (bySubject.length === 0) throw errors.noFicForSubject(subject);
  // Entra's own exchange tokens carry the exchange app's GUID as `aud` (captures); a credential's
  // api://AzureADTokenExchange matches it (emulator choice: Entra accepts such tokens where the URI is due).
  const aud = audiences(jwt.payload).map((a) => (a === TOKEN_EXCHANGE_APP_ID ? TOKEN_EXCHANGE_RESOURCE : a));
  const byAudience = bySubject.filter((f) => f.audiences.some((a) => aud.includes(a)));
  if (byAudience.length === 0) throw errors.noFicForAudience(aud.join(" "));
  // A credential added moments ago is not yet known everywhere: AADSTS70021 until it has propagated.
  const delay = ctx.settings.federatedCredentialPropagationSeconds;
  if (!byAudience.some((f) => ctx.store.federatedCredentialPropagated(client.appId, f, delay)))
    throw errors.federatedCredentialNotPropagated(issuer, subject, aud.join(" "));
  // An issuer inside this emulator is verified with our own keys, and (as in Entra) only a managed
  // identity's token may be a federated credential.
  const ownTenant = ownV2IssuerTenant(ctx.baseUrl, issuer);
  if (ownTenant !== undefined) {
    if (!(await ownSignatureValid(ctx.keys, ownTenant, token))) {
      throw errors.assertionSignature(
        "The provided signature value did not match the expected signature value.",
      );
    }
    const tenant = ctx.store.tenant(ownTenant);
    const issuedTo = tenant ? ctx.store.client(tenant, String(jwt.payload.azp ?? "")) : undefined;
    if (issuedTo?.kind !== "managedIdentity" || jwt.payload.idtyp !== "app") {
      throw errors.entraTokenAsFederatedCredential();
    }
  } else {
    // Learn: only RS256 issuers are supported for workload identity federation ("other algorithms may
    // work, but haven't been tested"); the emulator refuses them (emulator choice of code: 5002730).
    if (jwt.header.alg !== "RS256") throw errors.unsupportedSigningAlgorithm(String(jwt.header.alg));
    try {
      await ctx.federation.verify(token, issuer);
    } catch (error) {
      if (error instanceof FederationError && error.kind === "signature")
        throw errors.assertionSignature(error.message);
      ctx.logger.warn({ issuer, reason: (error as Error).message }, "federated issuer metadata unavailable");
      throw errors.issuerMetadataUnavailable(issuer);
    }
  }
  checkReplay(ctx, issuer, jwt);
}

/** With replay protection on, an assertion's `jti` may be used once (per issuer) until it expires. */
function checkReplay(ctx: TokenContext, issuer: string, jwt: DecodedJwt): void {
  if (ctx.settings.rejectReplayedAssertions && typeof jwt.payload.jti === "string") {
    const exp = jwt.payload.exp ?? ctx.now();
    if (!ctx.replay.record(`${issuer}|${jwt.payload.jti}`, exp + CLOCK_SKEW_SECONDS, ctx.now())) {
      throw errors.assertionReplayed();
    }
  }
}
