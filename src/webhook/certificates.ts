import { createPrivateKey, X509Certificate } from "node:crypto";

/**
 * Serving-certificate decisions (pure): is the Secret's material still good, and what the caBundle of the
 * MutatingWebhookConfiguration must hold. The I/O (reading and writing the Secret, patching the
 * configuration, loading the server) is in `certificate-manager.ts`.
 *
 * Secret keys: `ca.crt`/`ca.key` (our CA), `tls.crt`/`tls.key` (the serving leaf, signed by that CA), and
 * during a CA rotation `ca-previous.crt`, so the bundle trusts both until the old one expires and a
 * replica still serving a leaf from the old CA is never refused.
 */

export const SECRET_KEYS = {
  caCert: "ca.crt",
  caKey: "ca.key",
  previousCaCert: "ca-previous.crt",
  cert: "tls.crt",
  key: "tls.key",
} as const;

export interface CertificatePolicy {
  /** Validity of a new CA and of a new leaf, in days. */
  caValidDays: number;
  leafValidDays: number;
  /** Renew the CA / leaf once less than this many days remain. */
  caRenewBeforeDays: number;
  leafRenewBeforeDays: number;
  /** subjectAltNames the leaf must carry. */
  dnsNames: string[];
  ipAddresses: string[];
}

export const DEFAULT_POLICY: Omit<CertificatePolicy, "dnsNames" | "ipAddresses"> = {
  caValidDays: 3650,
  leafValidDays: 365,
  caRenewBeforeDays: 365,
  leafRenewBeforeDays: 90,
};

/** The DNS names of a webhook Service, as the API server addresses it (`<svc>.<ns>.svc`). */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

export type SecretData = Partial<Record<(typeof SECRET_KEYS)[keyof typeof SECRET_KEYS], string>>;

export type Plan =
  | { action: "keep"; nextCheckAt: number }
  /** A new leaf from the current CA. */
  | { action: "issue-leaf"; reason: string }
  /**
   * A new CA. The leaf that replicas serve stays until the new CA has been in the caBundle for the
   * propagation time (a later round issues it), so an API server that has not seen the new bundle yet
   * never meets a leaf it cannot verify. Without a usable leaf, one is issued at once.
   */
  | { action: "issue-ca"; reason: string; leafToo: boolean };

export interface PlanInput {
  data: SecretData | undefined;
  /** When the current CA was first written to the caBundle (undefined: not known to be). */
  caPublishedAt: number | undefined;
  /** How long API servers may take to see a new caBundle. */
  propagationMs: number;
}

const DAY = 86_400_000;

function parse(pem: string | undefined): X509Certificate | undefined {
  if (!pem) return undefined;
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function keyMatches(cert: X509Certificate, keyPem: string | undefined): boolean {
  if (!keyPem) return false;
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

function sans(cert: X509Certificate): { dns: Set<string>; ip: Set<string> } {
  const dns = new Set<string>();
  const ip = new Set<string>();
  for (const part of (cert.subjectAltName ?? "").split(/,\s*/)) {
    if (part.startsWith("DNS:")) dns.add(part.slice(4));
    if (part.startsWith("IP Address:")) ip.add(part.slice(11));
  }
  return { dns, ip };
}

/** Why a leaf cannot be served as it is, or undefined when it can (signed by `ca`, right names, in date). */
function leafProblem(
  data: SecretData | undefined,
  ca: X509Certificate,
  policy: CertificatePolicy,
  now: number,
): string | undefined {
  const leaf = parse(data?.[SECRET_KEYS.cert]);
  if (!leaf || !keyMatches(leaf, data?.[SECRET_KEYS.key])) return "no valid serving certificate";
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey))
    return "the serving certificate is not signed by the CA";
  const { dns, ip } = sans(leaf);
  if (!policy.dnsNames.every((n) => dns.has(n)) || !policy.ipAddresses.every((a) => ip.has(a))) {
    return "the serving certificate does not name the webhook's addresses";
  }
  const renewAt = leaf.validToDate.getTime() - policy.leafRenewBeforeDays * DAY;
  if (now >= renewAt || now < leaf.validFromDate.getTime()) return "the serving certificate expires soon";
  return undefined;
}

/** What the leader must do with the Secret's current material at time `now`. */
export function planCertificates(input: PlanInput, policy: CertificatePolicy, now: number): Plan {
  const { data } = input;
  const ca = parse(data?.[SECRET_KEYS.caCert]);
  if (!ca || !keyMatches(ca, data?.[SECRET_KEYS.caKey]) || !ca.ca) {
    const reason = data ? "the CA in the Secret is missing or broken" : "no Secret yet";
    return { action: "issue-ca", reason, leafToo: true };
  }
  const caEnd = ca.validToDate.getTime();
  const caRenewAt = caEnd - policy.caRenewBeforeDays * DAY;
  if (now >= caRenewAt) {
    // The serving leaf was signed by this (old) CA; it stays valid for the propagation time if it is good.
    return {
      action: "issue-ca",
      reason: "the CA expires soon",
      leafToo: leafProblem(data, ca, policy, now) !== undefined,
    };
  }
  const problem = leafProblem(data, ca, policy, now);
  if (problem) {
    const previous = parse(data?.[SECRET_KEYS.previousCaCert]);
    const signedByPrevious =
      previous !== undefined && parse(data?.[SECRET_KEYS.cert])?.checkIssued(previous) === true;
    // Just after a CA rotation: wait until every API server can have seen the new bundle.
    if (signedByPrevious && problem.includes("not signed")) {
      const safeAt = (input.caPublishedAt ?? now) + input.propagationMs;
      if (input.caPublishedAt === undefined || now < safeAt)
        return { action: "keep", nextCheckAt: Math.max(safeAt, now + 1_000) };
    }
    return { action: "issue-leaf", reason: problem };
  }
  const leaf = parse(data?.[SECRET_KEYS.cert]);
  const leafRenewAt = (leaf?.validToDate.getTime() ?? now) - policy.leafRenewBeforeDays * DAY;
  return { action: "keep", nextCheckAt: Math.min(leafRenewAt, caRenewAt) };
}

/** The CA bundle for the webhook configuration: our CA, plus the previous one while it is still valid. */
export function caBundle(data: SecretData, now: number): string {
  const pems = [data[SECRET_KEYS.caCert]];
  const previous = parse(data[SECRET_KEYS.previousCaCert]);
  if (previous && previous.validToDate.getTime() > now) pems.push(data[SECRET_KEYS.previousCaCert]);
  return pems
    .filter((p): p is string => typeof p === "string" && p.length > 0)
    .map((p) => (p.endsWith("\n") ? p : `${p}\n`))
    .join("");
}

/** A serving certificate and key a replica may load: both parse, match, and the certificate is in date. */
export function loadable(
  data: SecretData | undefined,
  now: number,
): { cert: string; key: string } | undefined {
  const cert = data?.[SECRET_KEYS.cert];
  const key = data?.[SECRET_KEYS.key];
  const parsed = parse(cert);
  if (!cert || !key || !parsed || !keyMatches(parsed, key)) return undefined;
  if (parsed.validToDate.getTime() <= now || parsed.validFromDate.getTime() > now) return undefined;
  return { cert, key };
}

export function decodeSecretData(data: Record<string, string> | undefined): SecretData {
  const out: SecretData = {};
  for (const key of Object.values(SECRET_KEYS)) {
    const value = data?.[key];
    if (value !== undefined) out[key] = Buffer.from(value, "base64").toString("utf8");
  }
  return out;
}

export function encodeSecretData(data: SecretData): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(data))
    if (value !== undefined) out[key] = Buffer.from(value).toString("base64");
  return out;
}
