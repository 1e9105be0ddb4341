import { API_VERSION, KIND } from "./constants.ts";
import type { AgentIdentity } from "./types.ts";

/**
 * Validation the CRD schema cannot do, and a defensive re-check of the rules it does do: objects reach
 * the operator and the webhook from an API server whose installed CRD may be older than this code.
 */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const API_NAME = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;

export function isGuid(value: unknown): value is string {
  return typeof value === "string" && GUID.test(value);
}

function isHttpsUrl(value: unknown): boolean {
  if (typeof value !== "string") return false;
  try {
    return new URL(value).protocol === "https:";
  } catch {
    return false;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export type Validation = { ok: true; identity: AgentIdentity } | { ok: false; problems: string[] };

/** Narrows an object from the API server to an AgentIdentity, listing every problem found. */
export function validateAgentIdentity(value: unknown): Validation {
  const problems: string[] = [];
  if (!isRecord(value)) return { ok: false, problems: ["not an object"] };
  if (value.apiVersion !== undefined && value.apiVersion !== API_VERSION)
    problems.push(`apiVersion must be ${API_VERSION}`);
  if (value.kind !== undefined && value.kind !== KIND) problems.push(`kind must be ${KIND}`);
  const meta = value.metadata;
  if (!isRecord(meta) || typeof meta.name !== "string" || typeof meta.namespace !== "string") {
    problems.push("metadata.name and metadata.namespace are required");
  }
  const spec = value.spec;
  if (!isRecord(spec)) return { ok: false, problems: [...problems, "spec is required"] };
  if (!isGuid(spec.tenantId)) problems.push("spec.tenantId must be a GUID");
  if (spec.instance !== undefined && !isHttpsUrl(spec.instance))
    problems.push("spec.instance must be an https URL");
  const blueprint = spec.blueprint;
  if (!isRecord(blueprint) || !isGuid(blueprint.clientId))
    problems.push("spec.blueprint.clientId must be a GUID");
  else problems.push(...credentialProblems(blueprint.credential));
  if (spec.agentId !== undefined && !isGuid(spec.agentId)) problems.push("spec.agentId must be a GUID");
  if (
    isRecord(blueprint) &&
    typeof spec.agentId === "string" &&
    typeof blueprint.clientId === "string" &&
    spec.agentId.toLowerCase() === blueprint.clientId.toLowerCase()
  ) {
    problems.push("spec.agentId cannot equal spec.blueprint.clientId");
  }
  if (typeof spec.serviceAccountName !== "string" || !DNS_SUBDOMAIN.test(spec.serviceAccountName)) {
    problems.push("spec.serviceAccountName must be a lowercase DNS subdomain name");
  }
  problems.push(...downstreamApiProblems(spec.downstreamApis));
  const federation = spec.federation;
  if (federation !== undefined) {
    if (!isRecord(federation)) problems.push("spec.federation must be an object");
    else {
      if (federation.mode !== undefined && federation.mode !== "Manual" && federation.mode !== "Graph") {
        problems.push("spec.federation.mode must be Manual or Graph");
      }
      if (federation.issuer !== undefined && !isHttpsUrl(federation.issuer)) {
        problems.push("spec.federation.issuer must be an https URL");
      }
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, identity: value as unknown as AgentIdentity };
}

function credentialProblems(credential: unknown): string[] {
  if (credential === undefined) return [];
  if (!isRecord(credential)) return ["spec.blueprint.credential must be an object"];
  const set = ["workloadIdentity", "managedIdentity", "clientSecret"].filter(
    (k) => credential[k] !== undefined,
  );
  if (set.length !== 1) {
    return [
      "spec.blueprint.credential must set exactly one of workloadIdentity, managedIdentity or clientSecret",
    ];
  }
  const mi = credential.managedIdentity;
  if (isRecord(mi) && mi.clientId !== undefined && !isGuid(mi.clientId)) {
    return ["spec.blueprint.credential.managedIdentity.clientId must be a GUID"];
  }
  const cs = credential.clientSecret;
  if (cs !== undefined) {
    const ref = isRecord(cs) ? cs.secretRef : undefined;
    if (
      !isRecord(ref) ||
      typeof ref.name !== "string" ||
      !DNS_SUBDOMAIN.test(ref.name) ||
      typeof ref.key !== "string"
    ) {
      return ["spec.blueprint.credential.clientSecret.secretRef needs a Secret name and key"];
    }
  }
  return [];
}

function downstreamApiProblems(apis: unknown): string[] {
  if (apis === undefined) return [];
  if (!isRecord(apis)) return ["spec.downstreamApis must be a map of name to API"];
  const problems: string[] = [];
  for (const [name, api] of Object.entries(apis)) {
    const where = `spec.downstreamApis.${name}`;
    if (!API_NAME.test(name) || name.includes("__")) problems.push(`${where}: invalid API name`);
    if (!isRecord(api)) {
      problems.push(`${where} must be an object`);
      continue;
    }
    if (!isHttpsUrl(api.baseUrl)) problems.push(`${where}.baseUrl must be an https URL`);
    const scopes = api.scopes;
    if (
      !Array.isArray(scopes) ||
      scopes.length === 0 ||
      !scopes.every((s) => typeof s === "string" && s !== "" && !s.includes(" "))
    ) {
      problems.push(`${where}.scopes must list at least one scope, without spaces`);
    } else if (
      api.requestAppToken === true &&
      (scopes.length !== 1 || !String(scopes[0]).endsWith("/.default"))
    ) {
      problems.push(`${where}: an app-token API needs exactly one scope ending in /.default`);
    }
  }
  return problems;
}

/** The minimal shape of a Secret the reference check needs (never the values). */
export interface SecretKeys {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export type SecretCheck =
  | { ok: true }
  | { ok: false; reason: "SecretNotFound" | "SecretKeyNotFound"; message: string };

/** Whether the Secret a clientSecret credential references exists and has a non-empty value under its key. */
export function checkSecretReference(
  secret: SecretKeys | undefined,
  ref: { name: string; key: string },
): SecretCheck {
  if (!secret) {
    return {
      ok: false,
      reason: "SecretNotFound",
      message: `Secret ${ref.name} (blueprint.credential.clientSecret.secretRef) does not exist in this namespace`,
    };
  }
  const value = secret.data?.[ref.key] ?? secret.stringData?.[ref.key];
  if (value === undefined || value === "") {
    const keys = Object.keys(secret.data ?? {}).sort();
    return {
      ok: false,
      reason: "SecretKeyNotFound",
      message: `Secret ${ref.name} has no non-empty key ${ref.key} (its keys: ${keys.length > 0 ? keys.join(", ") : "none"})`,
    };
  }
  return { ok: true };
}

/**
 * The other live AgentIdentities of the same namespace that bind the same ServiceAccount, by name. A
 * ServiceAccount can carry one identity only, so every one of them gets a Conflict reason.
 */
export function findBindingConflicts(
  identity: AgentIdentity,
  sameNamespace: readonly AgentIdentity[],
): string[] {
  return sameNamespace
    .filter(
      (other) =>
        other.metadata.name !== identity.metadata.name &&
        other.metadata.namespace === identity.metadata.namespace &&
        !other.metadata.deletionTimestamp &&
        other.spec.serviceAccountName === identity.spec.serviceAccountName,
    )
    .map((other) => other.metadata.name)
    .sort();
}
