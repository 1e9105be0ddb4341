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
}

export const DEFAULT_SETTINGS: Settings = {
  accessTokenLifetimeSeconds: 3599,
  rejectReplayedAssertions: false,
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
}

/** Entra's v2 issuer for a tenant, in the emulator's URL space. */
export function issuerOf(baseUrl: string, tenantId: string): string {
  return `${baseUrl}/${tenantId}/v2.0`;
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
