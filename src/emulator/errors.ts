import { randomUUID } from "node:crypto";
import { scrubTokens } from "../lib/log.ts";

/**
 * An OAuth error as Entra's token endpoint returns it. `code` is the AADSTS number; the description
 * starts with `AADSTS<code>:` and ends with the trace/correlation/timestamp trailer Entra appends.
 * Descriptions are built from directory names and request parameters only, never from a credential.
 */
export class EntraError extends Error {
  override name = "EntraError";
  readonly error: string;
  readonly code: number;
  readonly status: number;
  /** Extra response headers, such as Retry-After on throttling. */
  readonly headers: Record<string, string>;
  /** A claims challenge (Conditional Access): the `claims` member of the body, a JSON string. */
  readonly claims: string | undefined;
  /** Entra's `suberror` member (`consent_required` on AADSTS65001, capture). */
  suberror: string | undefined;

  constructor(
    error: string,
    code: number,
    message: string,
    status = 400,
    headers: Record<string, string> = {},
    claims?: string,
  ) {
    super(message);
    this.error = error;
    this.code = code;
    this.status = status;
    this.headers = headers;
    this.claims = claims;
  }
}

export interface EntraErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
  suberror?: string;
  claims?: string;
}

/** Entra's timestamp format in error bodies: `2024-10-02 22:05:03Z`. */
export function entraTimestamp(now: Date): string {
  return `${now.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

export function errorBody(
  err: EntraError,
  baseUrl: string,
  correlationId?: string,
  now = new Date(),
): EntraErrorBody {
  const traceId = randomUUID();
  const correlation =
    correlationId && /^[0-9a-fA-F-]{36}$/.test(correlationId) ? correlationId : randomUUID();
  const timestamp = entraTimestamp(now);
  // The trailer is separated by CRLF, as in Learn's examples (OBO error response, error-code reference) and
  // captures up to 2023; some captures from 2025 show single spaces instead. Parse both.
  return {
    error: err.error,
    error_description: `AADSTS${err.code}: ${scrubTokens(err.message)}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlation}\r\nTimestamp: ${timestamp}`,
    error_codes: [err.code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlation,
    error_uri: `${baseUrl}/error?code=${err.code}`,
    ...(err.suberror !== undefined ? { suberror: err.suberror } : {}),
    ...(err.claims !== undefined ? { claims: err.claims } : {}),
  };
}

// One constructor per case, so that grant handlers read as a list of checks and the AADSTS mapping
// lives in one file (documented in docs/emulator.md).

export const errors = {
  missingParameter: (name: string) =>
    new EntraError(
      "invalid_request",
      900144,
      `The request body must contain the following parameter: '${name}'.`,
    ),
  unsupportedGrantType: (grant: string) =>
    new EntraError(
      "unsupported_grant_type",
      70003,
      `The app requested an unsupported grant type '${grant}'.`,
    ),
  /** `invalid_tenant` on discovery and keys (azure-cli #22145 capture); `invalid_request` on the token endpoint. */
  tenantNotFound: (tenant: string, error: "invalid_request" | "invalid_tenant" = "invalid_request") =>
    new EntraError(
      error,
      90002,
      `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
    ),
  /** An app-only token as an OBO assertion (capture in test/fixtures/entra/error-7000114.json). */
  appOnlyOnBehalfOf: (clientId: string) =>
    new EntraError(
      "unauthorized_client",
      7000114,
      `Application '${clientId}' is not allowed to make application on-behalf-of calls.`,
    ),
  /** A federated credential that has not propagated yet (Learn; capture in Azure/azure-workload-identity #616). */
  federatedCredentialNotPropagated: (issuer: string, subject: string, audience: string) =>
    new EntraError(
      "invalid_request",
      70021,
      `No matching federated identity record found for presented assertion. Assertion Issuer: '${issuer}'. Assertion Subject: '${subject}'. Assertion Audience: '${audience}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation`,
    ),
  /**
   * A Conditional Access refusal with a claims challenge (Learn's OBO error response example: 50079,
   * `interaction_required`, `claims`). 50076 is Learn's "must use multifactor authentication".
   */
  claimsChallenge: (code: 50076 | 50079, resource: string, claims: string) =>
    new EntraError(
      "interaction_required",
      code,
      code === 50079
        ? `Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multifactor authentication to access '${resource}'.`
        : `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${resource}'.`,
      400,
      {},
      claims,
    ),
  applicationNotFound: (appId: string, tenant: string) =>
    new EntraError(
      "unauthorized_client",
      700016,
      `Application with identifier '${appId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`,
    ),
  missingClientCredentials: () =>
    new EntraError(
      "invalid_client",
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      401,
    ),
  invalidClientSecret: (appId: string) =>
    new EntraError(
      "invalid_client",
      7000215,
      `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${appId}'.`,
      401,
    ),
  invalidAssertionType: (value: string) =>
    new EntraError(
      "invalid_request",
      90011,
      `Unexpected client assertion type '${value}'. Use 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.`,
    ),
  malformedJwt: (what: string) =>
    new EntraError("invalid_request", 50027, `JWT token is invalid or malformed (${what}).`),
  unsupportedSigningAlgorithm: (alg: string) =>
    new EntraError(
      "invalid_request",
      5002730,
      `Invalid JWT token. Unsupported key for the signing algorithm '${alg}'.`,
    ),
  assertionTimeRange: (now: number, nbf: number | undefined, exp: number | undefined) =>
    new EntraError(
      "invalid_client",
      700024,
      `Client assertion is not within its valid time range. Current time: ${iso(now)}, assertion valid from ${iso(nbf ?? 0)}, expiry time of assertion ${iso(exp ?? 0)}.`,
      401,
    ),
  noFicForIssuer: (issuer: string) =>
    new EntraError(
      "invalid_client",
      700211,
      `No matching federated identity record found for presented assertion issuer '${issuer}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.`,
      401,
    ),
  noFicForAudience: (audience: string) =>
    new EntraError(
      "invalid_client",
      700212,
      `No matching federated identity record found for presented assertion audience '${audience}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.`,
      401,
    ),
  noFicForSubject: (subject: string) =>
    new EntraError(
      "invalid_client",
      700213,
      `No matching federated identity record found for presented assertion subject '${subject}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.`,
      401,
    ),
  assertionSignature: (reason: string) =>
    new EntraError(
      "invalid_client",
      700027,
      `Client assertion failed signature validation. [Reason - ${reason}]`,
      401,
    ),
  // Certificate credentials (client assertions signed with a certificate registered on the app).
  noCertificateThumbprint: () =>
    new EntraError(
      "invalid_request",
      50027,
      "Invalid JWT token. No certificate thumbprint specified in token header.",
    ),
  assertionClientIdMismatch: () =>
    new EntraError(
      "invalid_client",
      700021,
      `Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at ${CERT_DOCS}.`,
      401,
    ),
  assertionSubjectMismatch: () =>
    new EntraError(
      "invalid_client",
      50048,
      "Subject must match the issuer claim in the client assertion.",
      401,
    ),
  assertionAudienceMismatch: () =>
    new EntraError(
      "invalid_client",
      700023,
      `Client assertion audience claim does not match Realm issuer. Review the documentation at ${CERT_DOCS}.`,
      401,
    ),
  certificateNotFound: (thumbprint: string, appId: string) =>
    new EntraError(
      "invalid_client",
      700027,
      `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${appId}'.]`,
      401,
    ),
  certificateExpired: (thumbprint: string, start: string, end: string) =>
    new EntraError(
      "invalid_client",
      700027,
      `The certificate with identifier used to sign the client assertion is expired on application. [Reason - The key used is expired., Thumbprint of key used by client: '${thumbprint}', Found key 'Start=${usDate(start)}, End=${usDate(end)}']`,
      401,
    ),
  certificateSignature: (thumbprint: string, start: string, end: string) =>
    new EntraError(
      "invalid_client",
      700027,
      `Client assertion contains an invalid signature. [Reason - Key was found, but use of the key to verify the signature failed., Thumbprint of key used by client: '${thumbprint}', Found key 'Start=${usDate(start)}, End=${usDate(end)}']`,
      401,
    ),
  issuerMetadataUnavailable: (issuer: string) =>
    new EntraError(
      "invalid_request",
      50166,
      `Request to External OIDC endpoint failed. Could not fetch the OpenID configuration or signing keys of issuer '${issuer}'.`,
    ),
  entraTokenAsFederatedCredential: () =>
    new EntraError(
      "invalid_request",
      700222,
      "AAD-issued tokens may not be used for federated identity flows. Only a managed identity's token can be a federated identity credential.",
    ),
  assertionReplayed: () =>
    new EntraError(
      "invalid_client",
      50013,
      "Assertion is invalid. The assertion's 'jti' has already been used; a client assertion may be presented only once.",
      401,
    ),
  invalidScope: (scope: string, detail = "") =>
    new EntraError(
      "invalid_scope",
      70011,
      `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope '${scope}' is not valid.${detail ? ` ${detail}` : ""}`,
    ),
  clientCredentialsNeedDefault: (scope: string) =>
    new EntraError(
      "invalid_scope",
      1002012,
      `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
    ),
  multipleResources: () =>
    new EntraError(
      "invalid_request",
      28000,
      "Provided value for the input parameter scope is not valid because it contains more than one resource.",
    ),
  resourceNotFound: (resource: string, tenant: string) =>
    new EntraError(
      "invalid_resource",
      500011,
      `The resource principal named ${resource} was not found in the tenant named ${tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`,
    ),
  consentRequired: (clientId: string, displayName: string) => {
    const err = new EntraError(
      "invalid_grant",
      65001,
      `The user or administrator has not consented to use the application with ID '${clientId}' named '${displayName}'. Send an interactive authorization request for this user and resource.`,
    );
    err.suberror = "consent_required";
    return err;
  },
  fmiPathNotAllowed: (fmiPath: string, clientId: string) =>
    new EntraError(
      "unauthorized_client",
      700016,
      `Application with identifier '${fmiPath}' was not found as an agent identity of the agent identity blueprint '${clientId}' (fmi_path).`,
    ),
  invalidAssertion: (reason: string) =>
    new EntraError("invalid_grant", 50013, `Assertion failed signature validation. [Reason - ${reason}]`),
  assertionAudience: (actual: string, expected: string) =>
    new EntraError(
      "invalid_grant",
      50013,
      `Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '${actual}' and the expected audience is '${expected}'.`,
    ),
  userAssertionTimeRange: () =>
    new EntraError(
      "invalid_grant",
      500133,
      "Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token.",
    ),
  userNotFound: (user: string, tenant: string) =>
    new EntraError(
      "invalid_grant",
      50034,
      `The user account ${user} does not exist in the ${tenant} directory. To sign into this application, the account must be added to the directory.`,
    ),
  invalidRefreshToken: () =>
    new EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
  refreshTokenExpired: () =>
    new EntraError("invalid_grant", 700082, "The refresh token has expired due to inactivity."),
  refreshTokenWrongClient: () =>
    new EntraError(
      "invalid_grant",
      70000,
      "Provided grant is invalid or malformed. The refresh token was issued to a different client.",
    ),
  throttled: (retryAfterSeconds: number) =>
    new EntraError(
      "temporarily_unavailable",
      50196,
      "The server terminated an operation because it encountered a client request loop or too many requests.",
      429,
      {
        "retry-after": String(retryAfterSeconds),
      },
    ),
  transient: (status: number) =>
    new EntraError(
      status === 503 ? "temporarily_unavailable" : "server_error",
      90033,
      "A transient error has occurred. Please try again.",
      status,
    ),
};

const CERT_DOCS = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials";

/** Entra prints key validity as `06/29/2021 21:13:15` (US order, UTC). */
function usDate(isoDate: string): string {
  const d = new Date(isoDate);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
