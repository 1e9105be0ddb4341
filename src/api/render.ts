import { DEFAULT_INSTANCE, DEFAULT_SIDECAR_PORT, TOKEN_FILE } from "./constants.ts";
import type { AgentIdentity, DownstreamApi } from "./types.ts";

/**
 * Renders an AgentIdentity into the environment Microsoft's auth sidecar reads (`AzureAd__*`,
 * `DownstreamApis__*`, `Sidecar__*`, Kestrel and logging), so either our sidecar or Microsoft's image
 * runs from it unchanged. Pure: the webhook calls it for every injected pod.
 */

export type EnvVar =
  | { name: string; value: string }
  | { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } };

export interface SidecarSettings {
  /** Environment of the agentid-sidecar container. */
  sidecarEnv: EnvVar[];
  /** Environment added to the app containers: where the sidecar is, and which agent to ask for. */
  appEnv: EnvVar[];
  port: number;
}

export interface RenderOptions {
  /** Path of the projected service-account token inside the sidecar (workloadIdentity). */
  tokenFile?: string;
}

/** Name of the app env variable that carries spec.agentId (to pass as `?AgentIdentity=`). */
export const APP_ENV_AGENT_ID = "AGENTID_AGENT_ID";

const ALLOW_OVERRIDES: ReadonlyArray<
  [keyof NonNullable<NonNullable<AgentIdentity["spec"]["sidecar"]>["allowOverrides"]>, string]
> = [
  ["getAuthorizationHeader", "GetAuthorizationHeader"],
  ["getAuthorizationHeaderUnauthenticated", "GetAuthorizationHeaderUnauthenticated"],
  ["callDownstreamApi", "CallDownstreamApi"],
  ["callDownstreamApiUnauthenticated", "CallDownstreamApiUnauthenticated"],
];

export function normalizeInstance(instance: string | undefined): string {
  const value = instance ?? DEFAULT_INSTANCE;
  return value.endsWith("/") ? value : `${value}/`;
}

export function renderSidecarSettings(identity: AgentIdentity, options: RenderOptions = {}): SidecarSettings {
  const spec = identity.spec;
  const port = spec.sidecar?.port ?? DEFAULT_SIDECAR_PORT;
  const env: EnvVar[] = [
    { name: "AzureAd__Instance", value: normalizeInstance(spec.instance) },
    { name: "AzureAd__TenantId", value: spec.tenantId },
    { name: "AzureAd__ClientId", value: spec.blueprint.clientId },
    ...credentialEnv(identity, options),
    { name: "Kestrel__Endpoints__Http__Url", value: `http://127.0.0.1:${port}` },
  ];
  for (const name of Object.keys(spec.downstreamApis ?? {}).sort()) {
    const api = spec.downstreamApis?.[name];
    if (api) env.push(...downstreamApiEnv(name, api));
  }
  const overrides = spec.sidecar?.allowOverrides ?? {};
  for (const [field, key] of ALLOW_OVERRIDES) {
    const value = overrides[field];
    if (value !== undefined) env.push({ name: `Sidecar__AllowOverrides__${key}`, value: String(value) });
  }
  if (spec.sidecar?.logLevel) env.push({ name: "Logging__LogLevel__Default", value: spec.sidecar.logLevel });
  const appEnv: EnvVar[] = [{ name: "SIDECAR_URL", value: `http://127.0.0.1:${port}` }];
  if (spec.agentId) appEnv.push({ name: APP_ENV_AGENT_ID, value: spec.agentId });
  return { sidecarEnv: env, appEnv, port };
}

function credentialEnv(identity: AgentIdentity, options: RenderOptions): EnvVar[] {
  const credential = identity.spec.blueprint.credential;
  const prefix = "AzureAd__ClientCredentials__0__";
  if (credential?.clientSecret) {
    const ref = credential.clientSecret.secretRef;
    return [
      { name: `${prefix}SourceType`, value: "ClientSecret" },
      { name: `${prefix}ClientSecret`, valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } } },
    ];
  }
  if (credential?.managedIdentity) {
    const env: EnvVar[] = [{ name: `${prefix}SourceType`, value: "SignedAssertionFromManagedIdentity" }];
    if (credential.managedIdentity.clientId) {
      env.push({ name: `${prefix}ManagedIdentityClientId`, value: credential.managedIdentity.clientId });
    }
    return env;
  }
  return [
    { name: `${prefix}SourceType`, value: "SignedAssertionFilePath" },
    { name: `${prefix}SignedAssertionFileDiskPath`, value: options.tokenFile ?? TOKEN_FILE },
  ];
}

function downstreamApiEnv(name: string, api: DownstreamApi): EnvVar[] {
  const prefix = `DownstreamApis__${name}__`;
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
