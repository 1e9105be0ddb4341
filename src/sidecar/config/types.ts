/** The sidecar's configuration after binding Microsoft's keys and validating them. */

export type CredentialSpec =
  | { index: number; sourceType: "ClientSecret"; clientSecret: string }
  | { index: number; sourceType: "SignedAssertionFilePath"; path: string }
  | {
      index: number;
      sourceType: "SignedAssertionFromManagedIdentity";
      managedIdentityClientId?: string;
      /** Audience of the managed-identity token; `/.default` is appended for the request. */
      tokenExchangeUrl: string;
    }
  | { index: number; sourceType: "Path"; certificatePath: string; password?: string }
  | { index: number; sourceType: "Base64Encoded"; value: string; password?: string }
  | {
      index: number;
      sourceType: "KeyVault";
      vaultUrl: string;
      certificateName: string;
      /** A user-assigned managed identity to reach the vault with (else workload identity, else system-assigned). */
      managedIdentityClientId?: string;
    };
/** `AcquireTokenOptions` as configured or overridden (Microsoft.Identity.Abstractions names). */
export interface AcquireTokenOptions {
  tenant?: string;
  forceRefresh?: boolean;
  claims?: string;
  correlationId?: string;
  fmiPath?: string;
  managedIdentityUserAssignedClientId?: string;
  longRunningWebApiSessionKey?: string;
  popPublicKey?: string;
}

export interface DownstreamApi {
  name: string;
  baseUrl?: string;
  relativePath: string;
  scopes?: string[];
  httpMethod: string;
  requestAppToken: boolean;
  acceptHeader: string;
  contentType: string;
  extraHeaders: Record<string, string>;
  extraQuery: Record<string, string>;
  acquireTokenOptions: AcquireTokenOptions;
}

export interface AllowOverrides {
  GetAuthorizationHeader: boolean;
  GetAuthorizationHeaderUnauthenticated: boolean;
  CallDownstreamApi: boolean;
  CallDownstreamApiUnauthenticated: boolean;
}

export type RouteName = keyof AllowOverrides;

/** `Sidecar:AgentIdentity` and its two exceptions (our addition: see routes/agent-lock.ts). */
export interface AgentLock {
  agentId: string;
  allowBlueprintToken: boolean;
  allowFmiPathOverride: boolean;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export interface SidecarConfig {
  /** Authority host with a trailing slash, e.g. `https://login.microsoftonline.com/`. */
  instance: string;
  tenantId: string;
  /** The sidecar's own app: for agents, the agent identity blueprint. */
  clientId: string;
  /** Accepted inbound `aud` values. */
  audiences: string[];
  /** `AzureAd:Scopes`, enforced on /Validate only, as one accepted scope (Microsoft's behaviour). */
  validateScopes?: string;
  credentials: CredentialSpec[];
  apis: ReadonlyMap<string, DownstreamApi>;
  allowOverrides: AllowOverrides;
  allowOutboundRedirects: boolean;
  /** Serve callers that are not on loopback (our opt-in, `Sidecar:AllowNonLoopbackCallers`). */
  allowNonLoopbackCallers: boolean;
  /** Host names accepted besides localhost and loopback addresses (`AllowedHosts`), lower-cased. */
  allowedHosts: string[];
  /** Bounds of the long-running OBO sessions (`Sidecar:LongRunningObo:*`, our addition). */
  longRunningObo: { maxSessions: number; idleMs: number };
  /** Set when the sidecar is locked to one agent identity. */
  agentLock?: AgentLock;
  listen: ListenAddress;
  /** pino level from `Logging:LogLevel:Default`, if set. */
  logLevel?: string;
}

export interface ConfigResult {
  config?: SidecarConfig;
  /** Every problem found; the sidecar refuses to start while there is one. */
  problems: string[];
  warnings: string[];
}

export const DEFAULT_INSTANCE = "https://login.microsoftonline.com/";
export const TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange";
export const DEFAULT_LISTEN: ListenAddress = { host: "127.0.0.1", port: 5000 };
