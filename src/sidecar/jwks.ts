import type { CompactJWSHeaderParameters, createLocalJWKSet, FlattenedJWSInput } from "jose";
import type { Outbound } from "./outbound.ts";

/** The tenant's signing keys could not be downloaded or read: our problem (or Entra's), not the caller's. */
export class KeysUnavailableError extends Error {
  override name = "KeysUnavailableError";
}

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;

export interface KeySetOptions {
  url: string;
  outbound: Outbound;
  createLocalJWKSet: typeof createLocalJWKSet;
  /** Minimum time between two downloads triggered by an unknown key id. */
  cooldownMs: number;
  /** Keys older than this are downloaded again before use (jose's default: a day). */
  maxAgeMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * A tenant's JSON Web Key Set, downloaded through the sidecar's own client (jose's createRemoteJWKSet
 * builds `Headers`, which loads Node's internal undici). Unknown key ids (key rollover) cause one new
 * download per cooldown; concurrent downloads share one request.
 */
export class RemoteKeySet {
  readonly #o: KeySetOptions;
  #keys: LocalKeySet | undefined;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #attemptedAt = Number.NEGATIVE_INFINITY;
  #loading: Promise<void> | undefined;

  constructor(options: KeySetOptions) {
    this.#o = options;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  /** jose's key resolver (JWTVerifyGetKey). */
  readonly getKey = async (header: CompactJWSHeaderParameters, token: FlattenedJWSInput) => {
    const now = this.#now();
    const stale = now - this.#fetchedAt > (this.#o.maxAgeMs ?? 24 * 3600_000);
    // Old keys whose refresh failed stay in use; the refresh is tried again once per cooldown.
    if (!this.#keys || (stale && now - this.#attemptedAt >= this.#o.cooldownMs)) {
      await this.#reload(this.#keys !== undefined);
    }
    const keys = this.#keys;
    if (!keys) throw new KeysUnavailableError("no signing keys");
    try {
      return await keys(header, token);
    } catch (error) {
      const unknownKey = (error as { code?: unknown }).code === "ERR_JWKS_NO_MATCHING_KEY";
      if (!unknownKey || (this.#now() - this.#attemptedAt < this.#o.cooldownMs && !this.#loading))
        throw error;
      await this.#reload(false);
      return (this.#keys ?? keys)(header, token);
    }
  };

  /** One download at a time; with `keepOld`, a failed refresh keeps the keys already held. */
  async #reload(keepOld: boolean): Promise<void> {
    this.#loading ??= this.#download().finally(() => {
      this.#loading = undefined;
    });
    try {
      await this.#loading;
    } catch (error) {
      if (!keepOld) throw error;
    }
  }

  async #download(): Promise<void> {
    this.#attemptedAt = this.#now();
    const host = new URL(this.#o.url).host;
    let text: string;
    try {
      const response = await this.#o.outbound.request(this.#o.url, {
        method: "GET",
        headers: { accept: "application/json" },
        timeoutMs: this.#o.timeoutMs ?? 10_000,
        maxResponseBytes: MAX_JWKS_BYTES,
      });
      if (response.status !== 200) {
        throw new KeysUnavailableError(`the signing keys at ${host} answered HTTP ${response.status}`);
      }
      text = response.body.toString("utf8");
    } catch (error) {
      if (error instanceof KeysUnavailableError) throw error;
      throw new KeysUnavailableError(`the signing keys could not be downloaded: ${(error as Error).message}`);
    }
    try {
      this.#keys = this.#o.createLocalJWKSet(JSON.parse(text));
    } catch {
      throw new KeysUnavailableError(`the signing keys at ${host} are not a JSON Web Key Set`);
    }
    this.#fetchedAt = this.#now();
  }
}
