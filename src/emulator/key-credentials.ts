import { createHash, X509Certificate } from "node:crypto";
import { derivedGuid, isGuid, isObject } from "./directory.ts";

/**
 * A certificate registered on an application (Graph's `keyCredentials`, type AsymmetricX509Cert, usage
 * Verify). The application proves itself with a client assertion it signs with the certificate's private
 * key; only the certificate (public part) is ever stored here.
 */
export interface KeyCredentialSpec {
  /** Graph's keyId; derived from the app and the certificate when left out. */
  keyId?: string;
  displayName?: string;
  /** The certificate: PEM, or base64 DER as Graph's `key` property carries it. */
  key: string;
  /** ISO date from which the credential works; default the certificate's notBefore (as Graph does). */
  startDateTime?: string;
  /** ISO date after which it no longer works; default the certificate's notAfter. */
  endDateTime?: string;
  /** Derived: the SHA-1 thumbprint in upper-case hex, the value the portal shows and AADSTS messages print. */
  customKeyIdentifier?: string;
  type?: "AsymmetricX509Cert";
  usage?: "Verify";
}

export interface ParsedCertificate {
  sha1: string;
  sha256: string;
  /** For jose's jwtVerify. */
  publicKey: X509Certificate["publicKey"];
  subject: string;
  notBefore: string;
  notAfter: string;
}

const parsed = new Map<string, ParsedCertificate>();

/** Parses a PEM or base64-DER certificate (memoised: the same few certificates are checked per request). */
export function parseCertificate(key: string): ParsedCertificate {
  const cached = parsed.get(key);
  if (cached) return cached;
  const trimmed = key.trim();
  const cert = trimmed.startsWith("-----BEGIN CERTIFICATE-----")
    ? new X509Certificate(trimmed)
    : new X509Certificate(Buffer.from(trimmed.replace(/\s+/g, ""), "base64"));
  const result: ParsedCertificate = {
    sha1: createHash("sha1").update(cert.raw).digest("hex").toUpperCase(),
    sha256: createHash("sha256").update(cert.raw).digest("hex").toUpperCase(),
    publicKey: cert.publicKey,
    subject: cert.subject.replace(/\n/g, ", "),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
  };
  if (parsed.size > 1000) parsed.clear();
  parsed.set(key, result);
  return result;
}

/** Why a key credential is unacceptable, or undefined when it is fine. */
export function keyCredentialProblem(k: unknown): string | undefined {
  if (!isObject(k)) return "must be an object";
  if (typeof k.key !== "string" || k.key.length === 0)
    return "key: must be a certificate (PEM or base64 DER)";
  if (/PRIVATE KEY-----/.test(k.key)) {
    return "key: holds a private key; register only the certificate (public part)";
  }
  let cert: ParsedCertificate;
  try {
    cert = parseCertificate(k.key);
  } catch {
    return "key: is not an X.509 certificate (PEM or base64 DER)";
  }
  if (cert.publicKey.asymmetricKeyType !== "rsa") {
    return `key: the certificate has a ${String(cert.publicKey.asymmetricKeyType)} key; client assertions are RS256/PS256, so only RSA certificates are accepted`;
  }
  for (const field of ["startDateTime", "endDateTime"] as const) {
    const v = k[field];
    if (v !== undefined && (typeof v !== "string" || Number.isNaN(Date.parse(v)))) {
      return `${field}: must be an ISO date-time`;
    }
  }
  const start = Date.parse(String(k.startDateTime ?? cert.notBefore));
  const end = Date.parse(String(k.endDateTime ?? cert.notAfter));
  if (end <= start) return "endDateTime: must be after startDateTime";
  if (k.keyId !== undefined && (typeof k.keyId !== "string" || !isGuid(k.keyId)))
    return "keyId: must be a GUID";
  if (k.displayName !== undefined && typeof k.displayName !== "string")
    return "displayName: must be a string";
  if (k.type !== undefined && k.type !== "AsymmetricX509Cert") return "type: must be 'AsymmetricX509Cert'";
  if (k.usage !== undefined && k.usage !== "Verify") return "usage: must be 'Verify'";
  return undefined;
}

/** Fills in what Graph derives; call only on a credential keyCredentialProblem accepted. */
export function completeKeyCredential(k: KeyCredentialSpec, appId: string): void {
  const cert = parseCertificate(k.key);
  k.customKeyIdentifier = cert.sha1;
  k.keyId = k.keyId?.toLowerCase() ?? derivedGuid(`key:${appId}:${cert.sha1}`);
  k.displayName ??= cert.subject;
  k.startDateTime ??= cert.notBefore;
  k.endDateTime ??= cert.notAfter;
  k.type = "AsymmetricX509Cert";
  k.usage = "Verify";
}

/** Checks an app's key credentials and completes them; problems are reported with their path. */
export function checkKeyCredentials(
  list: KeyCredentialSpec[],
  appId: string,
  path: string,
  problems: string[],
): void {
  const thumbprints = new Set<string>();
  const keyIds = new Set<string>();
  list.forEach((k, j) => {
    const p = `${path}.keyCredentials[${j}]`;
    const problem = keyCredentialProblem(k);
    if (problem) {
      problems.push(`${p}.${problem}`);
      return;
    }
    completeKeyCredential(k, appId);
    const thumbprint = k.customKeyIdentifier ?? "";
    if (thumbprints.has(thumbprint)) problems.push(`${p}.key: certificate ${thumbprint} is registered twice`);
    thumbprints.add(thumbprint);
    const keyId = k.keyId ?? "";
    if (keyIds.has(keyId)) problems.push(`${p}.keyId: ${keyId} is used twice`);
    keyIds.add(keyId);
  });
}
