import { CONDITION_FEDERATION, CONDITION_READY, CONDITION_VERIFIED } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityStatus, FederatedCredentialStatus } from "../api/types.ts";
import { type ConditionDecision, findCondition, mergeConditions } from "./conditions.ts";
import type { VerificationFailure } from "./entra-errors.ts";

/** What one reconcile found out; the status follows from it without I/O. */
export interface Observations {
  /** Problems of an object the installed CRD let through (an older schema); nothing else is done then. */
  invalid?: string[];
  conflicts: string[];
  serviceAccount:
    | { state: "ready"; created: boolean }
    | { state: "missing" }
    | { state: "skipped" }
    | { state: "error"; message: string };
  secret: { state: "notRequired" } | { state: "ok" } | { state: "problem"; reason: string; message: string };
  federation:
    | { state: "notRequired"; message: string }
    /** Not looked at because of an earlier problem (e.g. a conflict): nothing was written to Graph. */
    | { state: "skipped"; message: string }
    | { state: "issuerUnknown"; message: string }
    | { state: "manual"; credential: FederatedCredentialStatus }
    | { state: "graph"; credential: FederatedCredentialStatus; reason: string; message: string }
    | { state: "graphFailed"; credential?: FederatedCredentialStatus; reason: string; message: string };
  verification:
    | { state: "disabled" }
    | { state: "notVerifiable"; message: string }
    | { state: "pending"; message: string }
    /** Not due: the previous Verified condition and lastVerification stand. */
    | { state: "unchanged" }
    | { state: "verified"; fingerprint: string }
    | { state: "failed"; fingerprint: string; failure: VerificationFailure }
    | { state: "unreachable"; fingerprint: string; message: string };
}

function verifiedDecision(identity: AgentIdentity, obs: Observations): ConditionDecision {
  const v = obs.verification;
  const d = (status: ConditionDecision["status"], reason: string, message: string) => ({
    type: CONDITION_VERIFIED,
    status,
    reason,
    message,
  });
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
    case "verified":
      return d(
        "True",
        "TokenIssued",
        identity.spec.agentId
          ? `Entra issued the blueprint's exchange token for agent ${identity.spec.agentId}.`
          : "Entra issued the blueprint's exchange token.",
      );
    case "failed":
      return d("False", v.failure.reason, v.failure.message);
    case "unreachable":
      return d("Unknown", "EntraUnreachable", v.message);
    case "unchanged": {
      const old = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
      return old ? d(old.status, old.reason, old.message) : d("Unknown", "Pending", "Not verified yet.");
    }
  }
}

function federationDecision(obs: Observations, verified: ConditionDecision): ConditionDecision {
  const f = obs.federation;
  const d = (status: ConditionDecision["status"], reason: string, message: string) => ({
    type: CONDITION_FEDERATION,
    status,
    reason,
    message,
  });
  switch (f.state) {
    case "notRequired":
      return d("True", "NotRequired", f.message);
    case "skipped":
      return d("Unknown", "Pending", f.message);
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

function readyDecision(
  identity: AgentIdentity,
  obs: Observations,
  federation: ConditionDecision,
  verified: ConditionDecision,
): ConditionDecision {
  const d = (status: ConditionDecision["status"], reason: string, message: string) => ({
    type: CONDITION_READY,
    status,
    reason,
    message,
  });
  const sa = identity.spec.serviceAccountName;
  if (obs.invalid && obs.invalid.length > 0) {
    return d(
      "False",
      "InvalidSpec",
      `The AgentIdentity is invalid (is the installed CRD out of date?): ${obs.invalid.join("; ")}.`,
    );
  }
  if (obs.conflicts.length > 0) {
    return d(
      "False",
      "Conflict",
      `ServiceAccount ${sa} is also bound by AgentIdentity ${obs.conflicts.join(", ")} in this namespace; a ServiceAccount can carry one identity only.`,
    );
  }
  if (obs.serviceAccount.state === "missing") {
    return d(
      "False",
      "ServiceAccountNotFound",
      `ServiceAccount ${sa} does not exist and createServiceAccount is false.`,
    );
  }
  if (obs.serviceAccount.state === "error")
    return d("False", "ServiceAccountError", obs.serviceAccount.message);
  if (obs.secret.state === "problem") return d("False", obs.secret.reason, obs.secret.message);
  if (federation.status === "False") return d("False", federation.reason, federation.message);
  if (verified.status === "False") return d("False", "VerificationFailed", verified.message);
  const note = verified.status === "True" ? "verified against Entra" : `not verified (${verified.reason})`;
  return d("True", "Ready", `ServiceAccount ${sa} is bound to this identity; ${note}.`);
}

export function decideConditions(identity: AgentIdentity, obs: Observations): ConditionDecision[] {
  const verified = verifiedDecision(identity, obs);
  const federation = federationDecision(obs, verified);
  return [readyDecision(identity, obs, federation, verified), verified, federation];
}

export interface VerificationRecord {
  time: string;
  fingerprint: string;
}

/** The whole desired status; `verifiedAt` is the time a verification ran in this reconcile, if one did. */
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
  const f = obs.federation;
  if ((f.state === "manual" || f.state === "graph" || f.state === "graphFailed") && f.credential)
    status.federatedCredential = f.credential;
  const v = obs.verification;
  if (v.state === "verified" || v.state === "failed" || v.state === "unreachable") {
    status.lastVerification = {
      time: now.toISOString().replace(/\.\d{3}Z$/, "Z"),
      fingerprint: v.fingerprint,
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
