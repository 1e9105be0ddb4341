import { CONDITION_FEDERATION, CONDITION_READY, CONDITION_VERIFIED } from "../api/constants.ts";
import type {
  AgentIdentity,
  AgentIdentityStatus,
  AgentStatus,
  CredentialKind,
  FederatedCredentialStatus,
} from "../api/types.ts";
import { type ConditionDecision, findCondition, mergeConditions } from "./conditions.ts";
import type { VerificationFailure } from "./entra-errors.ts";
import type { ServiceAccountObject } from "./service-account.ts";

/** What one reconcile found out; the status follows from it without I/O. */
export interface Observations {
  /** Problems of an object the installed CRD let through (an older schema); nothing else is done then. */
  invalid?: string[];
  /**
   * The identity may not use its blueprint (missing, unusable, not admitting it) or its ServiceAccount is
   * held by an older identity: nothing else is done, nothing is called outside the cluster.
   */
  refused?: { reason: string; message: string };
  /** How the sidecar proves itself; decides which evidence makes Ready true. */
  credential?: CredentialKind;
  serviceAccount:
    | { state: "ready"; created: boolean; object?: ServiceAccountObject }
    | { state: "notOptedIn"; message: string }
    | { state: "skipped" }
    | { state: "error"; message: string };
  secret:
    | { state: "notRequired" }
    | { state: "notChecked" }
    | { state: "ok" }
    | { state: "problem"; reason: string; message: string };
  agent:
    | { state: "skipped" }
    /** `adopted`: an agent this identity's marker tag found in Entra (created before a crash), just now. */
    | { state: "known"; status: AgentStatus; adopted?: boolean }
    | { state: "pending"; message: string }
    | { state: "failed"; reason: string; message: string; retry: boolean };
  federation:
    | { state: "notRequired"; message: string }
    /** Not looked at because of an earlier problem: nothing was written to Graph. */
    | { state: "skipped"; message: string }
    | { state: "issuerUnknown"; message: string }
    | { state: "manual"; credential: FederatedCredentialStatus }
    | { state: "graph"; credential: FederatedCredentialStatus; reason: string; message: string }
    /**
     * The identity is refused and the credential the operator had written for it is dealt with (removed,
     * kept for an heir, or left for lack of a Graph credential): status no longer records it.
     */
    | { state: "revoked"; reason: string; message: string }
    | {
        state: "graphFailed";
        credential?: FederatedCredentialStatus;
        reason: string;
        message: string;
        retry: boolean;
      };
  verification:
    | { state: "disabled" }
    | { state: "notVerifiable"; message: string }
    | { state: "pending"; message: string }
    /** Not due: the previous Verified condition and lastVerification stand. */
    | { state: "unchanged" }
    | { state: "verified"; fingerprint: string; time?: string }
    /** `time`: when it was attempted (lastVerification.time; the transient backoff's seed), else now. */
    /** `transientSince`: a transient failure's run began then (lastVerification.transientSince). */
    | {
        state: "failed";
        fingerprint: string;
        failure: VerificationFailure;
        time?: string;
        transientSince?: string;
      }
    | { state: "unreachable"; fingerprint: string; message: string; time?: string; transientSince?: string }
    /** The manager may not request a token in this namespace (no agentid-token-requester RoleBinding). */
    | { state: "tokenForbidden"; fingerprint: string; message: string; reason?: string; time?: string };
}

/** The starting point of a reconcile: nothing checked yet, verification waiting. */
export function initialObservations(): Observations {
  return {
    serviceAccount: { state: "skipped" },
    secret: { state: "notRequired" },
    agent: { state: "skipped" },
    federation: { state: "skipped", message: "Not checked yet." },
    verification: {
      state: "pending",
      message:
        "Waiting until the blueprint admits this identity and the ServiceAccount, agent and federated credential are in order.",
    },
  };
}

type Decide = (status: ConditionDecision["status"], reason: string, message: string) => ConditionDecision;
const decider =
  (type: string): Decide =>
  (status, reason, message) => ({ type, status, reason, message });

function verifiedDecision(identity: AgentIdentity, obs: Observations): ConditionDecision {
  const v = obs.verification;
  const d = decider(CONDITION_VERIFIED);
  switch (v.state) {
    case "disabled":
      return d(
        "Unknown",
        "VerificationDisabled",
        "The manager runs with verification turned off (--no-verify).",
      );
    case "notVerifiable":
      return d("Unknown", "NotVerifiable", v.message);
    case "pending":
      return d("Unknown", "Pending", v.message);
    case "verified": {
      const agent = obs.agent.state === "known" ? obs.agent.status.clientId : undefined;
      return d(
        "True",
        "TokenIssued",
        `Entra issued the blueprint's exchange token${agent ? ` for agent ${agent}` : ""}.`,
      );
    }
    case "failed":
      return d("False", v.failure.reason, v.failure.message);
    case "unreachable":
      return d("Unknown", "EntraUnreachable", v.message);
    case "tokenForbidden":
      // TokenRequestDenied (an admission webhook) or TokenRequestForbidden (RBAC).
      return d("Unknown", v.reason ?? TOKEN_REQUEST_FORBIDDEN, v.message);
    case "unchanged": {
      const old = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
      return old ? d(old.status, old.reason, old.message) : d("Unknown", "Pending", "Not verified yet.");
    }
  }
}

/** Verified's and Ready's reason when the namespace has not bound agentid-token-requester to the manager. */
export const TOKEN_REQUEST_FORBIDDEN = "TokenRequestForbidden";
/** The same when an admission webhook refused the TokenRequest (src/operator/verify.ts). */
export const TOKEN_REQUEST_DENIED = "TokenRequestDenied";

/** FederationConfigured reasons of a revocation; they stay while the identity remains refused. */
export const REVOCATION_REASONS: ReadonlySet<string> = new Set([
  "CredentialRemoved",
  "CredentialKeptForHeir",
  "CredentialLeftInPlace",
]);

function federationDecision(
  identity: AgentIdentity,
  obs: Observations,
  verified: ConditionDecision,
): ConditionDecision {
  const f = obs.federation;
  const d = decider(CONDITION_FEDERATION);
  switch (f.state) {
    case "notRequired":
      return d("True", "NotRequired", f.message);
    case "skipped": {
      // The revocation already happened: say so for as long as the refusal lasts, not just once.
      const old = findCondition(identity.status?.conditions, CONDITION_FEDERATION);
      if (obs.refused && old && REVOCATION_REASONS.has(old.reason))
        return d(old.status, old.reason, old.message);
      return d("Unknown", "Pending", f.message);
    }
    case "revoked":
      return d("False", f.reason, f.message);
    case "issuerUnknown":
      return d("False", "IssuerUnknown", f.message);
    case "graph":
      return d("True", f.reason, f.message);
    case "graphFailed":
      return d("False", f.reason, f.message);
    case "manual":
      // In Manual mode only Entra knows whether the credential was added: the verification tells.
      if (verified.status === "True")
        return d("True", "Verified", "Entra accepts this ServiceAccount's tokens for the blueprint.");
      if (verified.reason === "NoMatchingFederatedCredential" || verified.reason === "IssuerNotTrusted") {
        return d(
          "False",
          "CredentialMissing",
          `Add the federated credential to the blueprint: ${f.credential.azCommand}`,
        );
      }
      return d(
        "Unknown",
        "ManualSetupRequired",
        `Add the federated credential to the blueprint if not done yet: ${f.credential.azCommand}`,
      );
  }
}

/**
 * Ready=True only when pods can really get tokens: admitted, ServiceAccount held and opted in, agent
 * known, and the federation in place (written by the operator, or proven by a real exchange; a managed
 * identity's is the platform's and cannot be observed here). Unknown, with a reason, while not known.
 */
function readyDecision(
  identity: AgentIdentity,
  obs: Observations,
  federation: ConditionDecision,
  verified: ConditionDecision,
): ConditionDecision {
  const d = decider(CONDITION_READY);
  const sa = identity.spec.serviceAccountName;
  if (obs.invalid && obs.invalid.length > 0) {
    return d(
      "False",
      "InvalidSpec",
      `The AgentIdentity is invalid (is the installed CRD out of date?): ${obs.invalid.join("; ")}.`,
    );
  }
  if (obs.refused) {
    const revoked = REVOCATION_REASONS.has(federation.reason) ? ` ${federation.message}` : "";
    return d("False", obs.refused.reason, `${obs.refused.message}${revoked}`);
  }
  if (obs.serviceAccount.state === "notOptedIn")
    return d("False", "ServiceAccountNotOptedIn", obs.serviceAccount.message);
  if (obs.serviceAccount.state === "error")
    return d("False", "ServiceAccountError", obs.serviceAccount.message);
  if (obs.secret.state === "problem") return d("False", obs.secret.reason, obs.secret.message);
  if (obs.agent.state === "failed") return d("False", obs.agent.reason, obs.agent.message);
  if (obs.agent.state === "pending") return d("Unknown", "AgentPending", obs.agent.message);
  if (federation.status === "False") return d("False", federation.reason, federation.message);
  if (verified.status === "False") return d("False", "VerificationFailed", verified.message);
  if (obs.serviceAccount.state !== "ready" || obs.agent.state !== "known")
    return d("Unknown", "Pending", "Not checked yet.");
  // Verification is on but this namespace does not let the manager request a token: say what to bind,
  // even where the operator wrote the credential (the cluster admin asked for proof, and gets none).
  if (verified.reason === TOKEN_REQUEST_FORBIDDEN || verified.reason === TOKEN_REQUEST_DENIED)
    return d("Unknown", verified.reason, verified.message);
  const proven = verified.status === "True";
  switch (obs.credential) {
    case "managedIdentity":
      return d(
        "True",
        "Ready",
        `ServiceAccount ${sa} is bound; the blueprint uses a managed identity, whose token the sidecar gets at run time.`,
      );
    case "clientSecret":
      if (proven)
        return d(
          "True",
          "Ready",
          `ServiceAccount ${sa} is bound; the development secret was verified against Entra.`,
        );
      return d(
        "Unknown",
        "SecretUnverified",
        `ServiceAccount ${sa} is bound; the development secret is not verified yet (${verified.reason}).`,
      );
    default:
      if (federation.status === "True" && (proven || obs.federation.state === "graph")) {
        const note = proven
          ? "verified against Entra"
          : `written by the operator, not verified (${verified.reason})`;
        return d(
          "True",
          "Ready",
          `ServiceAccount ${sa} is bound and its federated credential is in place, ${note}.`,
        );
      }
      return d(
        "Unknown",
        "ManualSetupUnverified",
        `The federated credential cannot be confirmed yet (${verified.reason}): ${federation.message}`,
      );
  }
}

export function decideConditions(identity: AgentIdentity, obs: Observations): ConditionDecision[] {
  const verified = verifiedDecision(identity, obs);
  const federation = federationDecision(identity, obs, verified);
  return [readyDecision(identity, obs, federation, verified), verified, federation];
}

/** The whole desired status. */
export function desiredStatus(identity: AgentIdentity, obs: Observations, now: Date): AgentIdentityStatus {
  const generation = identity.metadata.generation ?? 0;
  const status: AgentIdentityStatus = {
    observedGeneration: generation,
    conditions: mergeConditions(
      identity.status?.conditions,
      decideConditions(identity, obs),
      generation,
      now,
    ),
  };
  if (obs.serviceAccount.state === "ready") status.serviceAccount = identity.spec.serviceAccountName;
  if (obs.agent.state === "known") status.agent = obs.agent.status;
  else if (identity.status?.agent?.created) {
    // Never forget an agent the operator created: the finalizer deletes it from this record.
    status.agent = identity.status.agent;
  } else if (identity.spec.agent.clientId) status.agent = { clientId: identity.spec.agent.clientId };
  const f = obs.federation;
  if ((f.state === "manual" || f.state === "graph" || f.state === "graphFailed") && f.credential)
    status.federatedCredential = f.credential;
  else if (f.state === "skipped" && identity.status?.federatedCredential)
    status.federatedCredential = identity.status.federatedCredential;
  const v = obs.verification;
  if (
    v.state === "verified" ||
    v.state === "failed" ||
    v.state === "unreachable" ||
    v.state === "tokenForbidden"
  ) {
    status.lastVerification = {
      time: ("time" in v && v.time) || now.toISOString().replace(/\.\d{3}Z$/, "Z"),
      fingerprint: v.fingerprint,
      ...("transientSince" in v && v.transientSince ? { transientSince: v.transientSince } : {}),
    };
  } else if (v.state === "unchanged" && identity.status?.lastVerification) {
    status.lastVerification = identity.status.lastVerification;
  }
  return status;
}

/** Deep equality of JSON values (key order ignored), to skip writes that change nothing. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  const ak = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const bk = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return (
    ak.length === bk.length &&
    ak.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}
