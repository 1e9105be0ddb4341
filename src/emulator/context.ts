import type { Logger } from "pino";
import type { FederationVerifier } from "./federation.ts";
import type { KeyStore } from "./keys.ts";
import type { RefreshTokenStore } from "./refresh-tokens.ts";
import type { DirectoryStore } from "./store.ts";

export interface Settings {
  accessTokenLifetimeSeconds: number;
  /**
   * Reject a federated client assertion whose `jti` was already used. Off by default: workload-identity
   * clients (azure-identity, Microsoft.Identity.Web) present the same projected token for several
   * minutes, and Entra accepts that.
   */
  rejectReplayedAssertions: boolean;
  /**
   * Seconds a federated identity credential added at run time (admin API, Graph) takes to take effect;
   * until then a matching assertion gets AADSTS70021, as Entra answers for minutes after a change (Learn,
   * workload-identity-federation-considerations). Off (0) by default so tests are exact; the playground
   * turns it on with a short value so retry paths run.
   */
  federatedCredentialPropagationSeconds: number;
}

export const DEFAULT_SETTINGS: Settings = {
  accessTokenLifetimeSeconds: 3599,
  rejectReplayedAssertions: false,
  federatedCredentialPropagationSeconds: 0,
};

/** Everything a grant handler needs; built once per emulator, so handlers stay free of globals. */
export interface TokenContext {
  store: DirectoryStore;
  keys: KeyStore;
  federation: FederationVerifier;
  refreshTokens: RefreshTokenStore;
  replay: ReplayCache;
  settings: Settings;
  /** The emulator's base URL, e.g. https://127.0.0.1:9443. */
  baseUrl: string;
  logger: Logger;
  /** Seconds since the epoch. */
  now(): number;
  /** A counter that changes from token to token (order of multi-valued claims; see claims.ts). */
  nextVariation(): number;
}

/** Entra's v2 issuer for a tenant, in the emulator's URL space. */
export function issuerOf(baseUrl: string, tenantId: string): string {
  return `${baseUrl}/${tenantId}/v2.0`;
}

/**
 * Entra's v1 issuer is `https://sts.windows.net/<tid>/` whatever host issued the token (access-token-claims
 * reference; Learn's agent token sample). The emulator writes exactly that, so validators that derive the v1
 * issuer from the tenant id (Microsoft.Identity.Web, the sidecar) accept it as they would Entra's.
 */
export const V1_ISSUER_PREFIX = "https://sts.windows.net/";

export function v1IssuerOf(tenantId: string): string {
  return `${V1_ISSUER_PREFIX}${tenantId}/`;
}

/** The issuer of an access token of the given version. */
export function tokenIssuer(baseUrl: string, tenantId: string, version: 1 | 2): string {
  return version === 1 ? v1IssuerOf(tenantId) : issuerOf(baseUrl, tenantId);
}

/** Remembers assertion ids until they expire, to refuse a second use. */
export class ReplayCache {
  readonly #seen = new Map<string, number>();

  /** Records the id; false when it was already recorded and has not expired. */
  record(key: string, expiresAt: number, now: number): boolean {
    if (this.#seen.size > 10_000) for (const [k, exp] of this.#seen) if (exp < now) this.#seen.delete(k);
    const previous = this.#seen.get(key);
    if (previous !== undefined && previous >= now) return false;
    this.#seen.set(key, expiresAt);
    return true;
  }
}
