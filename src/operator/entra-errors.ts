import { scrubTokens } from "../lib/log.ts";

/** Entra's error answer on the token endpoint (AADSTS codes live in error_codes and error_description). */
export interface EntraError {
  error?: string;
  error_description?: string;
  error_codes?: number[];
}

export interface VerificationFailure {
  /** CamelCase condition reason. */
  reason: string;
  /** AADSTS code, e.g. "AADSTS70021", when Entra gave one. */
  code?: string;
  /** One line for people: Entra's words, then what to do. Never contains a token. */
  message: string;
  /**
   * Entra answers this code for a passing failure on its side too, so it is retried with backoff
   * (seconds, growing to --verify-retry) instead of waiting the full --verify-retry at once.
   */
  transient?: boolean;
}

/**
 * AADSTS50166 and AADSTS90061, "Request to External OIDC endpoint failed": Entra could not fetch the
 * issuer's discovery document or keys. That is permanent for an issuer Entra can never reach (a private
 * cluster), but it is also reported occasionally for issuers that work (azure-workload-identity #642,
 * "Occasionally a pod fails to retrieve a token"; Azure/AKS #4029, "transient AKS OIDC endpoint issue",
 * DNS failures), and an overloaded issuer (a busy kube-apiserver) produces it too. Retrying with a
 * growing backoff handles both: a passing failure clears in seconds, a lasting one ends at the long wait.
 */
export const TRANSIENT_CODES: ReadonlySet<number> = new Set([50166, 90061]);

/**
 * Verified reasons retried with backoff: the transient codes' reason, and Entra unreachable (5xx, 429,
 * no answer; set by the reconciler's status, src/operator/status.ts).
 */
export const TRANSIENT_VERIFICATION_REASONS: ReadonlySet<string> = new Set([
  "IssuerUnreachable",
  "EntraUnreachable",
]);

interface Known {
  reason: string;
  hint: (context: HintContext) => string;
}

export interface HintContext {
  azCommand?: string;
  tenantId: string;
  blueprintClientId: string;
  agentId?: string;
}

const addCredential = (c: HintContext) =>
  c.azCommand
    ? `Add the federated credential from status.federatedCredential to the blueprint: ${c.azCommand}`
    : "Add a federated credential for this ServiceAccount to the blueprint (see status.federatedCredential).";

// Which codes rest on a public source and which on the emulator's choice is listed in docs/emulator.md
// ("AADSTS codes"); the ones marked "emulator choice" below are how the emulator answers a case for which
// no capture of Entra's answer was found, so the mapping is only as good as that guess.
const KNOWN: Record<number, Known> = {
  // Learn: also answered for minutes after a credential is added (propagation); the reconciler retries.
  70021: { reason: "NoMatchingFederatedCredential", hint: addCredential },
  700211: { reason: "IssuerNotTrusted", hint: addCredential },
  // Emulator choice (a sibling of 700211/700213; no capture of the audience case was found).
  700212: { reason: "NoMatchingFederatedCredential", hint: addCredential },
  700213: { reason: "NoMatchingFederatedCredential", hint: addCredential },
  // Learn for an unknown client; for an fmi_path naming no agent identity of the blueprint: emulator choice.
  700016: {
    reason: "BlueprintNotFound",
    hint: (c) =>
      `Check the AgentIdentityBlueprint's clientId (${c.blueprintClientId}) and tenantId (${c.tenantId})${c.agentId ? `, and that agent ${c.agentId} is an agent identity of this blueprint` : ""}.`,
  },
  90002: {
    reason: "TenantNotFound",
    hint: (c) => `Check the AgentIdentityBlueprint's tenantId (${c.tenantId}) and cloud.`,
  },
  7000215: {
    reason: "InvalidClientSecret",
    hint: () => "The Secret named by spec.clientSecretRef holds a wrong client secret for the blueprint.",
  },
  7000222: {
    reason: "ClientSecretExpired",
    hint: () => "Create a new client secret for the blueprint and update the Secret.",
  },
  700024: {
    reason: "AssertionNotValid",
    hint: () => "The service-account token was outside its validity window: check the clocks of the cluster.",
  },
  50027: {
    reason: "AssertionNotValid",
    hint: () => "Entra could not validate the service-account token against the issuer's keys.",
  },
  5002727: {
    reason: "AssertionNotValid",
    hint: () => "Entra could not validate the service-account token against the issuer's keys.",
  },
  700027: {
    reason: "AssertionNotValid",
    hint: () =>
      "Entra could not validate the service-account token's signature; check that the issuer's JWKS is reachable.",
  },
  50166: {
    reason: "IssuerUnreachable",
    hint: () =>
      "Entra could not fetch the issuer's discovery document or keys; the issuer must be publicly reachable over https.",
  },
  90061: {
    reason: "IssuerUnreachable",
    hint: () =>
      "Entra could not fetch the issuer's discovery document or keys; the issuer must be publicly reachable.",
  },
  // No public source shows Entra answering 500011 for an unknown fmi_path; the emulator answers 700016.
  500011: {
    reason: "AgentIdentityNotFound",
    hint: (c) => `Check the agent (${c.agentId ?? "unset"}): it must be an agent identity of this blueprint.`,
  },
};

/** First line of Entra's description, without trace ids, and never a token. */
function summary(description: string | undefined): string {
  const line =
    (description ?? "")
      .split(/\r?\n/)[0]
      ?.replace(/\s*Trace ID:.*$/i, "")
      .trim() ?? "";
  return scrubTokens(line).slice(0, 500);
}

export function classifyEntraError(
  status: number,
  body: EntraError,
  context: HintContext,
): VerificationFailure {
  const codeNumber =
    body.error_codes?.[0] ?? Number(/AADSTS(\d+)/.exec(body.error_description ?? "")?.[1] ?? Number.NaN);
  const code = Number.isFinite(codeNumber) ? `AADSTS${codeNumber}` : undefined;
  const known = Number.isFinite(codeNumber) ? KNOWN[codeNumber] : undefined;
  const said = summary(body.error_description) || `${body.error ?? "error"} (HTTP ${status})`;
  const text = said.startsWith(code ?? "\u0000") || !code ? said : `${code}: ${said}`;
  const hint = known ? ` ${known.hint(context)}` : "";
  return {
    reason: known?.reason ?? "TokenRequestRejected",
    ...(code ? { code } : {}),
    message: `Entra refused the blueprint's token request: ${text}${hint}`,
    ...(TRANSIENT_CODES.has(codeNumber) ? { transient: true } : {}),
  };
}
