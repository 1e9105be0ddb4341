import { developmentSecretsAllowed, sidecarWideningNotAllowed } from "./admit.ts";
import { authorityAllowed, authorityHostOf } from "./cloud.ts";
import { DEFAULT_SIDECAR_PORT, DEFAULT_TOKEN_EXPIRATION_SECONDS, TOKEN_FILE } from "./constants.ts";
import { agentClientIdOf } from "./ready.ts";
import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  type ClientSecretRef,
  type CredentialKind,
  credentialKind,
  type DownstreamApi,
  type SidecarResources,
} from "./types.ts";

/**
 * Renders an AgentIdentity, its AgentIdentityBlueprint and the operator's status (a created agent's client
 * id) into the environment Microsoft's auth sidecar reads (`AzureAd__*`, `DownstreamApis__*`,
 * `Sidecar__*`, Kestrel and logging), so either our sidecar or Microsoft's image runs from it unchanged.
 * Tenant, cloud, client id and credential come from the blueprint only. Pure: the webhook calls it for
 * every injected pod. It never reads a Secret: a development secret is returned as a reference.
 */

export type EnvVar =
  | { name: string; value: string }
  | { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } };

export interface SidecarSettings {
  /** Environment of the agentid-sidecar container. */
  sidecarEnv: EnvVar[];
  /** Environment added to the app containers: where the sidecar is, and which agent it acts as. */
  appEnv: EnvVar[];
  port: number;
  /** The agent identity the sidecar is locked to (Sidecar__AgentIdentity). */
  agentClientId: string;
  /** workloadIdentity: mount the projected token (audience api://AzureADTokenExchange) into the sidecar. */
  credential: CredentialKind;
  /** Lifetime of the projected token (workloadIdentity). */
  tokenExpirationSeconds: number;
  /** The Secret (in the identity's own namespace) the sidecar's env references (clientSecret only). */
  secretRef?: ClientSecretRef;
  /** Resources the identity asks for; the webhook fills in its defaults for what is unset. */
  resources?: SidecarResources;
}

export type RenderResult =
  | { ok: true; settings: SidecarSettings }
  | {
      ok: false;
      reason:
        | "AgentNotReady"
        | "DevelopmentSecretsNotAllowed"
        | "AuthorityHostNotAllowed"
        | "SidecarWideningNotAllowed";
      message: string;
    };

export interface RenderOptions {
  /** Path of the projected service-account token inside the sidecar (workloadIdentity). */
  tokenFile?: string;
  /** The manager's --allowed-authority-hosts: a Custom cloud's host must be listed (default: none). */
  allowedAuthorityHosts?: readonly string[];
}

/** Name of the app env variable that carries the agent's client id (for `?AgentIdentity=`). */
export const APP_ENV_AGENT_ID = "AGENTID_AGENT_ID";

const ALLOW_OVERRIDES: ReadonlyArray<
  [keyof NonNullable<NonNullable<AgentIdentity["spec"]["sidecar"]>["allowOverrides"]>, string]
> = [
  ["getAuthorizationHeader", "GetAuthorizationHeader"],
  ["getAuthorizationHeaderUnauthenticated", "GetAuthorizationHeaderUnauthenticated"],
  ["callDownstreamApi", "CallDownstreamApi"],
  ["callDownstreamApiUnauthenticated", "CallDownstreamApiUnauthenticated"],
];

export function renderSidecarSettings(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  options: RenderOptions = {},
): RenderResult {
  const spec = identity.spec;
  const agentClientId = agentClientIdOf(identity);
  if (!agentClientId) {
    return {
      ok: false,
      reason: "AgentNotReady",
      message: `AgentIdentity ${identity.metadata.name} has no agent identity yet (the operator has not recorded the one it creates in status.agent.clientId).`,
    };
  }
  if (!authorityAllowed(blueprint, options.allowedAuthorityHosts ?? [])) {
    return {
      ok: false,
      reason: "AuthorityHostNotAllowed",
      message: `AgentIdentityBlueprint ${blueprint.metadata.name} names authority host ${blueprint.spec.authorityHost ?? ""}, which the manager's --allowed-authority-hosts does not list.`,
    };
  }
  const credential = credentialKind(identity, blueprint);
  // Without the namespace: whether any spec.admits rule allows it (the caller asked blueprintAdmitsIdentity
  // with the namespace first; this only keeps a renderer on its own from widening).
  if (credential === "clientSecret" && !developmentSecretsAllowed(blueprint)) {
    return {
      ok: false,
      reason: "DevelopmentSecretsNotAllowed",
      message: `AgentIdentityBlueprint ${blueprint.metadata.name} does not allow development client secrets (no spec.admits rule sets developmentSecrets).`,
    };
  }
  // Checked here too, not only by the operator: the webhook renders from its cache and must never widen
  // the lock on an identity whose Ready status predates a change of the blueprint.
  const widening = sidecarWideningNotAllowed(blueprint, identity);
  if (widening) return { ok: false, reason: "SidecarWideningNotAllowed", message: widening };
  const port = spec.sidecar?.port ?? DEFAULT_SIDECAR_PORT;
  const env: EnvVar[] = [
    { name: "AzureAd__Instance", value: authorityHostOf(blueprint) },
    { name: "AzureAd__TenantId", value: blueprint.spec.tenantId },
    { name: "AzureAd__ClientId", value: blueprint.spec.clientId },
    ...credentialEnv(identity, blueprint, options),
    { name: "Kestrel__Endpoints__Http__Url", value: `http://127.0.0.1:${port}` },
  ];
  const apis = [...(spec.downstreamApis ?? [])].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  for (const api of apis) env.push(...downstreamApiEnv(api));
  // The agent lock: the sidecar acts as this agent only, unless the identity widens it where the blueprint allows.
  env.push({ name: "Sidecar__AgentIdentity", value: agentClientId });
  if (spec.sidecar?.allowBlueprintToken === true)
    env.push({ name: "Sidecar__AllowBlueprintToken", value: "true" });
  if (spec.sidecar?.allowFmiPathOverride === true)
    env.push({ name: "Sidecar__AllowFmiPathOverride", value: "true" });
  const overrides = spec.sidecar?.allowOverrides ?? {};
  for (const [field, key] of ALLOW_OVERRIDES) {
    const value = overrides[field];
    if (value !== undefined) env.push({ name: `Sidecar__AllowOverrides__${key}`, value: String(value) });
  }
  if (spec.sidecar?.logLevel) env.push({ name: "Logging__LogLevel__Default", value: spec.sidecar.logLevel });
  const appEnv: EnvVar[] = [
    { name: "SIDECAR_URL", value: `http://127.0.0.1:${port}` },
    { name: APP_ENV_AGENT_ID, value: agentClientId },
  ];
  const settings: SidecarSettings = {
    sidecarEnv: env,
    appEnv,
    port,
    agentClientId,
    credential,
    tokenExpirationSeconds: spec.sidecar?.tokenExpirationSeconds ?? DEFAULT_TOKEN_EXPIRATION_SECONDS,
  };
  if (credential === "clientSecret" && spec.clientSecretRef) {
    settings.secretRef = { name: spec.clientSecretRef.name, key: spec.clientSecretRef.key };
  }
  if (spec.sidecar?.resources) settings.resources = spec.sidecar.resources;
  return { ok: true, settings };
}

function credentialEnv(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  options: RenderOptions,
): EnvVar[] {
  const prefix = "AzureAd__ClientCredentials__0__";
  const ref = identity.spec.clientSecretRef;
  if (ref) {
    return [
      { name: `${prefix}SourceType`, value: "ClientSecret" },
      { name: `${prefix}ClientSecret`, valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } } },
    ];
  }
  const mi = blueprint.spec.credential?.managedIdentity;
  if (mi) {
    const env: EnvVar[] = [{ name: `${prefix}SourceType`, value: "SignedAssertionFromManagedIdentity" }];
    if (mi.clientId) env.push({ name: `${prefix}ManagedIdentityClientId`, value: mi.clientId });
    return env;
  }
  return [
    { name: `${prefix}SourceType`, value: "SignedAssertionFilePath" },
    { name: `${prefix}SignedAssertionFileDiskPath`, value: options.tokenFile ?? TOKEN_FILE },
  ];
}

function downstreamApiEnv(api: DownstreamApi): EnvVar[] {
  const prefix = `DownstreamApis__${api.name}__`;
  const env: EnvVar[] = [{ name: `${prefix}BaseUrl`, value: api.baseUrl }];
  api.scopes.forEach((scope, i) => {
    env.push({ name: `${prefix}Scopes__${i}`, value: scope });
  });
  if (api.relativePath !== undefined) env.push({ name: `${prefix}RelativePath`, value: api.relativePath });
  if (api.httpMethod !== undefined) env.push({ name: `${prefix}HttpMethod`, value: api.httpMethod });
  if (api.requestAppToken !== undefined)
    env.push({ name: `${prefix}RequestAppToken`, value: String(api.requestAppToken) });
  if (api.acceptHeader !== undefined) env.push({ name: `${prefix}AcceptHeader`, value: api.acceptHeader });
  if (api.contentType !== undefined) env.push({ name: `${prefix}ContentType`, value: api.contentType });
  for (const header of Object.keys(api.extraHeaders ?? {}).sort()) {
    env.push({ name: `${prefix}ExtraHeaderParameters__${header}`, value: api.extraHeaders?.[header] ?? "" });
  }
  for (const param of Object.keys(api.extraQueryParameters ?? {}).sort()) {
    env.push({
      name: `${prefix}ExtraQueryParameters__${param}`,
      value: api.extraQueryParameters?.[param] ?? "",
    });
  }
  return env;
}
