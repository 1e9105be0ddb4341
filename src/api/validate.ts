import { API_VERSION, BLUEPRINT_KIND, KIND } from "./constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "./types.ts";

/**
 * Validation the CRD schema cannot do, and a defensive re-check of the rules it does do: objects reach
 * the operator and the webhook from an API server whose installed CRD may be older than this code.
 */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const API_NAME = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const CLOUDS = ["AzurePublic", "AzureUSGovernment", "AzureChina", "Custom"];

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
export type BlueprintValidation =
  | { ok: true; blueprint: AgentIdentityBlueprint }
  | { ok: false; problems: string[] };

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
  const ref = spec.blueprintRef;
  if (!isRecord(ref) || typeof ref.name !== "string" || !DNS_SUBDOMAIN.test(ref.name))
    problems.push("spec.blueprintRef.name must name an AgentIdentityBlueprint");
  const agent = spec.agent;
  if (!isRecord(agent)) problems.push("spec.agent is required");
  else {
    const set = (agent.clientId !== undefined ? 1 : 0) + (agent.create !== undefined ? 1 : 0);
    if (set !== 1) problems.push("spec.agent must set exactly one of clientId or create");
    if (agent.clientId !== undefined && !isGuid(agent.clientId))
      problems.push("spec.agent.clientId must be a GUID");
    if (agent.create !== undefined) {
      const create = agent.create;
      if (!isRecord(create) || typeof create.displayName !== "string" || create.displayName === "")
        problems.push("spec.agent.create.displayName is required");
    }
    if (
      agent.deletionPolicy !== undefined &&
      agent.deletionPolicy !== "Delete" &&
      agent.deletionPolicy !== "Retain"
    )
      problems.push("spec.agent.deletionPolicy must be Delete or Retain");
  }
  if (typeof spec.serviceAccountName !== "string" || !DNS_SUBDOMAIN.test(spec.serviceAccountName)) {
    problems.push("spec.serviceAccountName must be a lowercase DNS subdomain name");
  }
  problems.push(...downstreamApiProblems(spec.downstreamApis));
  problems.push(...sidecarProblems(spec.sidecar));
  const secret = spec.clientSecretRef;
  if (
    secret !== undefined &&
    (!isRecord(secret) ||
      typeof secret.name !== "string" ||
      !DNS_SUBDOMAIN.test(secret.name) ||
      typeof secret.key !== "string" ||
      secret.key === "")
  ) {
    problems.push("spec.clientSecretRef needs a Secret name and key");
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, identity: value as unknown as AgentIdentity };
}

function sidecarProblems(sidecar: unknown): string[] {
  if (sidecar === undefined) return [];
  if (!isRecord(sidecar)) return ["spec.sidecar must be an object"];
  const problems: string[] = [];
  const port = sidecar.port;
  if (port !== undefined && (!Number.isInteger(port) || (port as number) < 1024 || (port as number) > 65535))
    problems.push("spec.sidecar.port must be an integer from 1024 to 65535");
  const ttl = sidecar.tokenExpirationSeconds;
  if (ttl !== undefined && (!Number.isInteger(ttl) || (ttl as number) < 600 || (ttl as number) > 86400))
    problems.push("spec.sidecar.tokenExpirationSeconds must be an integer from 600 to 86400");
  for (const flag of ["allowBlueprintToken", "allowFmiPathOverride"]) {
    if (sidecar[flag] !== undefined && typeof sidecar[flag] !== "boolean")
      problems.push(`spec.sidecar.${flag} must be true or false`);
  }
  return problems;
}

function downstreamApiProblems(apis: unknown): string[] {
  if (apis === undefined) return [];
  if (!Array.isArray(apis)) return ["spec.downstreamApis must be a list of APIs"];
  const problems: string[] = [];
  const seen = new Set<string>();
  apis.forEach((api: unknown, i) => {
    if (!isRecord(api)) {
      problems.push(`spec.downstreamApis[${i}] must be an object`);
      return;
    }
    const name = api.name;
    const where = `spec.downstreamApis[${typeof name === "string" ? name : i}]`;
    if (typeof name !== "string" || !API_NAME.test(name) || name.includes("__"))
      problems.push(`${where}: invalid API name`);
    else if (seen.has(name)) problems.push(`${where}: duplicate API name`);
    else seen.add(name);
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
  });
  return problems;
}

/** Narrows an object from the API server to an AgentIdentityBlueprint, listing every problem found. */
export function validateBlueprint(value: unknown): BlueprintValidation {
  const problems: string[] = [];
  if (!isRecord(value)) return { ok: false, problems: ["not an object"] };
  if (value.apiVersion !== undefined && value.apiVersion !== API_VERSION)
    problems.push(`apiVersion must be ${API_VERSION}`);
  if (value.kind !== undefined && value.kind !== BLUEPRINT_KIND)
    problems.push(`kind must be ${BLUEPRINT_KIND}`);
  const meta = value.metadata;
  if (!isRecord(meta) || typeof meta.name !== "string") problems.push("metadata.name is required");
  const spec = value.spec;
  if (!isRecord(spec)) return { ok: false, problems: [...problems, "spec is required"] };
  if (!isGuid(spec.tenantId)) problems.push("spec.tenantId must be a GUID");
  if (!isGuid(spec.clientId)) problems.push("spec.clientId must be a GUID");
  const cloud = spec.cloud ?? "AzurePublic";
  if (typeof cloud !== "string" || !CLOUDS.includes(cloud))
    problems.push(`spec.cloud must be one of ${CLOUDS.join(", ")}`);
  if (cloud === "Custom" && !isHttpsUrl(spec.authorityHost))
    problems.push("spec.authorityHost must be an https URL with cloud Custom");
  if (cloud !== "Custom" && spec.authorityHost !== undefined)
    problems.push("spec.authorityHost is only allowed with cloud Custom");
  const credential = spec.credential;
  if (credential !== undefined) {
    if (!isRecord(credential)) problems.push("spec.credential must be an object");
    else {
      const set = ["workloadIdentity", "managedIdentity"].filter((k) => credential[k] !== undefined);
      if (set.length !== 1)
        problems.push("spec.credential must set exactly one of workloadIdentity or managedIdentity");
      const wi = credential.workloadIdentity;
      if (isRecord(wi) && wi.issuer !== undefined && !isHttpsUrl(wi.issuer))
        problems.push("spec.credential.workloadIdentity.issuer must be an https URL");
      const mi = credential.managedIdentity;
      if (isRecord(mi) && mi.clientId !== undefined && !isGuid(mi.clientId))
        problems.push("spec.credential.managedIdentity.clientId must be a GUID");
    }
  }
  const federation = spec.federation;
  if (isRecord(federation) && federation.management !== undefined) {
    if (federation.management !== "Manual" && federation.management !== "Graph")
      problems.push("spec.federation.management must be Manual or Graph");
    if (federation.management === "Graph" && isRecord(credential) && credential.managedIdentity !== undefined)
      problems.push("spec.federation.management Graph needs credential.workloadIdentity");
  }
  const admits = spec.admits;
  if (admits !== undefined && !Array.isArray(admits))
    problems.push("spec.admits must be a list of rules (agentid.io/v1alpha1 changed it from one object)");
  if (Array.isArray(admits)) {
    admits.forEach((rule: unknown, i) => {
      const at = `spec.admits[${i}]`;
      if (!isRecord(rule)) {
        problems.push(`${at} must be an object`);
        return;
      }
      const agents = rule.agents;
      if (isRecord(agents) && agents.allowed !== undefined) {
        if (!Array.isArray(agents.allowed) || !agents.allowed.every(isGuid))
          problems.push(`${at}.agents.allowed must list GUIDs`);
        else if (
          typeof spec.clientId === "string" &&
          agents.allowed.some((a) => a.toLowerCase() === (spec.clientId as string).toLowerCase())
        )
          problems.push(`${at}.agents.allowed cannot contain the blueprint's own clientId`);
      }
      if (
        rule.namespaces !== undefined &&
        (!Array.isArray(rule.namespaces) || !rule.namespaces.every((n) => typeof n === "string"))
      )
        problems.push(`${at}.namespaces must list namespace names`);
      if (
        rule.maxIdentities !== undefined &&
        (typeof rule.maxIdentities !== "number" ||
          !Number.isInteger(rule.maxIdentities) ||
          rule.maxIdentities < 0)
      )
        problems.push(`${at}.maxIdentities must be a whole number, 0 or more`);
    });
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, blueprint: value as unknown as AgentIdentityBlueprint };
}

/** The minimal shape of a Secret the reference check needs (never the values). */
export interface SecretKeys {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export type SecretCheck =
  | { ok: true }
  | { ok: false; reason: "SecretNotFound" | "SecretKeyNotFound"; message: string };

/** Whether the Secret spec.clientSecretRef references exists and has a non-empty value under its key. */
export function checkSecretReference(
  secret: SecretKeys | undefined,
  ref: { name: string; key: string },
): SecretCheck {
  if (!secret) {
    return {
      ok: false,
      reason: "SecretNotFound",
      message: `Secret ${ref.name} (spec.clientSecretRef) does not exist in this namespace`,
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
