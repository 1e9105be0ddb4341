import { jwtVerify } from "jose";
import type { TokenContext } from "./context.ts";
import type { TenantSpec } from "./directory.ts";
import { errors } from "./errors.ts";
import { parseCertificate } from "./key-credentials.ts";
import { audiences, type DecodedJwt } from "./own-tokens.ts";
import type { Client } from "./store.ts";

/** What Entra's certificate-credentials page allows for an app's own assertions. */
export const CERTIFICATE_ALGORITHMS = ["RS256", "PS256"];

type AppClient = Exclude<Client, { kind: "agentIdentity" }>;

/**
 * An app's own assertion (private_key_jwt) names the app as its issuer; a federated one names an identity
 * provider, whose issuer is always an https URL (federated credentials cannot have any other).
 */
export function isOwnAssertion(jwt: DecodedJwt): boolean {
  const iss = jwt.payload.iss;
  return typeof iss === "string" && iss !== "" && !iss.includes("://");
}

/**
 * The audiences Entra accepts on an app's own assertion: the token endpoint of this host for the
 * tenant, by id or domain, v2 or v1 path, compared case-insensitively (Learn's own example writes
 * `.../contoso.onmicrosoft.com/oauth2/V2.0/token`). `common`/`organizations` and the issuer URL are refused.
 */
export function acceptedAudiences(baseUrl: string, t: TenantSpec): Set<string> {
  const names = [t.id, ...(t.domains ?? [])];
  return new Set(
    names
      .flatMap((n) => [`${baseUrl}/${n}/oauth2/v2.0/token`, `${baseUrl}/${n}/oauth2/token`])
      .map((a) => a.toLowerCase()),
  );
}

/** The thumbprint the header names, as upper-case hex, and which hash it is. */
function headerThumbprint(
  header: Record<string, unknown>,
): { hex: string; hash: "sha1" | "sha256" } | undefined {
  const s256 = header["x5t#S256"];
  if (typeof s256 === "string" && s256 !== "") {
    return { hex: Buffer.from(s256, "base64url").toString("hex").toUpperCase(), hash: "sha256" };
  }
  const s1 = header.x5t;
  if (typeof s1 === "string" && s1 !== "") {
    return { hex: Buffer.from(s1, "base64url").toString("hex").toUpperCase(), hash: "sha1" };
  }
  return undefined;
}

/**
 * RFC 7515 §4.1.6: `x5c` is a non-empty array of base64 DER certificates, the first holding the signing
 * key, so it must be the certificate the thumbprint names. It is checked for shape only; trust comes
 * from the registered certificate, never from `x5c`.
 */
function checkX5c(x5c: unknown, thumbprint: { hex: string; hash: "sha1" | "sha256" }): void {
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((c) => typeof c === "string")) {
    throw errors.malformedJwt("the x5c header must be a non-empty array of base64 DER certificates");
  }
  let leaf: string;
  try {
    leaf = parseCertificate(String(x5c[0]))[thumbprint.hash];
  } catch {
    throw errors.malformedJwt("the first x5c entry is not a base64 DER certificate");
  }
  if (leaf !== thumbprint.hex) {
    throw errors.malformedJwt("the first x5c certificate is not the one the thumbprint header names");
  }
}

/**
 * Verifies a client assertion the app signed with one of its registered certificates, in Entra's
 * order of checks: who it claims to be, for whom, which key, the key's validity window, the signature.
 * `x5c` is not used to find the key: subject-name/issuer (SNI) trust is not emulated, so the
 * certificate must be registered, as for any app without trusted certificate subjects.
 */
export async function checkCertificateAssertion(
  ctx: TokenContext,
  t: TenantSpec,
  client: AppClient,
  token: string,
  jwt: DecodedJwt,
): Promise<void> {
  const { payload } = jwt;
  const header = jwt.header as Record<string, unknown>;
  const clientId = client.appId.toLowerCase();
  if (String(payload.iss).toLowerCase() !== clientId) throw errors.assertionClientIdMismatch();
  if (String(payload.sub ?? "").toLowerCase() !== clientId) throw errors.assertionSubjectMismatch();
  const accepted = acceptedAudiences(ctx.baseUrl, t);
  if (!audiences(payload).some((a) => accepted.has(a.toLowerCase())))
    throw errors.assertionAudienceMismatch();
  if (typeof payload.jti !== "string" || payload.jti === "") {
    throw errors.malformedJwt("the client_assertion has no 'jti' claim");
  }
  const alg = String(header.alg);
  if (!CERTIFICATE_ALGORITHMS.includes(alg)) throw errors.unsupportedSigningAlgorithm(alg);
  const thumbprint = headerThumbprint(header);
  if (!thumbprint) throw errors.noCertificateThumbprint();
  if (header.x5c !== undefined) checkX5c(header.x5c, thumbprint);
  const key = (client.app.keyCredentials ?? []).find(
    (k) => parseCertificate(k.key)[thumbprint.hash] === thumbprint.hex,
  );
  if (!key) throw errors.certificateNotFound(thumbprint.hex, client.appId);
  const cert = parseCertificate(key.key);
  const start = key.startDateTime ?? cert.notBefore;
  const end = key.endDateTime ?? cert.notAfter;
  const nowMs = ctx.now() * 1000;
  if (nowMs < Date.parse(start) || nowMs > Date.parse(end)) {
    throw errors.certificateExpired(thumbprint.hex, start, end);
  }
  try {
    // Time claims were checked already, with Entra's skew; here only the signature counts.
    await jwtVerify(token, cert.publicKey, { algorithms: [alg], clockTolerance: Number.MAX_SAFE_INTEGER });
  } catch {
    throw errors.certificateSignature(thumbprint.hex, start, end);
  }
}
