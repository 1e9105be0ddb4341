/**
 * The sidecar's one token cache, in front of msal-node for every flow.
 *
 * - Bounded: least-recently-used entries go first once `maxEntries` is reached.
 * - Single-flight: concurrent misses for one key share one acquisition.
 * - Refresh-ahead: a token is renewed in the background before it expires, on use and by a sweep,
 *   so the hot path keeps answering from memory; a failed refresh backs off and the old token is
 *   served until it really expires.
 * The hot path (`lookup`) is a Map get, a timestamp compare and a counter bump (LRU order is kept
 *   as a use counter per entry; the least recently used entry is searched for only when one must go,
 *   which happens on an acquisition, never on the hot path).
 */

export interface AcquiredToken {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** Epoch milliseconds at which Entra suggests renewing (`refresh_in`), if it said. */
  refreshOn?: number;
}

export interface CachedToken extends AcquiredToken {
  /** `Bearer <token>`. */
  authorizationHeader: string;
  /** The `/AuthorizationHeader` answer, serialised once. */
  headerBody: string;
}

export type Loader = () => Promise<AcquiredToken>;

interface Entry {
  token: CachedToken;
  /** The entry's own loader: never a caller's forced or claims loader (see `get`). */
  load: Loader;
  refreshAt: number;
  /** No background refresh from this time on (an OBO entry's inbound assertion expires then). */
  refreshUntil: number;
  /** After this the token is no longer handed out as fresh (kept only as a fallback while Entra is down). */
  staleAt: number;
  usedSinceRefresh: boolean;
  /** Value of the cache's use counter at the last lookup or acquisition (LRU order). */
  lastUsed: number;
  /** Earliest next background refresh after a failure. */
  retryAt: number;
  failures: number;
}

export interface CacheEvents {
  hit?(): void;
  miss?(): void;
  refresh?(outcome: "ok" | "error"): void;
  evict?(): void;
}

/** How one caller wants its token (see `TokenCache.get`). */
export interface GetOptions {
  /** Skip the cached token (ForceRefresh); concurrent forced callers still share one acquisition. */
  force?: boolean;
  /**
   * A loader for this caller only (a claims request): run on its own, never joined by other callers,
   * never stored as the entry's loader. Its token replaces the cached one, as MSAL's cache does.
   * `id` tells identical claims requests apart for single-flight.
   */
  own?: { id: string; load: Loader };
  /**
   * The loader for an acquisition this caller starts (its correlation id, say); the entry still keeps
   * `load` for later refreshes. Default: `load`.
   */
  run?: Loader;
  /** Epoch ms after which the entry must not be refreshed ahead (the OBO assertion's `exp`). */
  refreshUntil?: number;
}

export interface TokenCacheOptions {
  maxEntries: number;
  /** How often the background sweep runs; 0 turns it off (tests drive `sweep()`). */
  sweepIntervalMs?: number;
  now?: () => number;
  events?: CacheEvents;
  /** Told about background refresh failures (never given the token). */
  onRefreshError?: (key: string, error: unknown) => void;
}

const FIVE_MINUTES = 5 * 60_000;

/**
 * JSON.stringify of the whole object gives one flat string; a template literal would give a rope of
 * pieces that Node re-flattens on every response it writes (measurably slower on the hot path).
 */
export function serialiseHeader(accessToken: string): CachedToken["headerBody"] {
  return JSON.stringify({ authorizationHeader: `Bearer ${accessToken}` });
}

export function toCached(token: AcquiredToken): CachedToken {
  return {
    ...token,
    authorizationHeader: `Bearer ${token.accessToken}`,
    headerBody: serialiseHeader(token.accessToken),
  };
}

/** When to renew and when to stop serving a token, from its lifetime (pure, tested directly). */
export function schedule(token: AcquiredToken, obtainedAt: number): { refreshAt: number; staleAt: number } {
  const lifetime = Math.max(0, token.expiresAt - obtainedAt);
  const staleAt = token.expiresAt - Math.min(60_000, lifetime / 10);
  let refreshAt = token.expiresAt - Math.min(FIVE_MINUTES, lifetime / 4);
  if (token.refreshOn !== undefined && token.refreshOn < refreshAt)
    refreshAt = Math.max(obtainedAt, token.refreshOn);
  return { refreshAt, staleAt };
}

/** Backoff for background refreshes after failures: 1 s, 2 s, 4 s … capped at 30 s, with jitter. */
function refreshBackoff(failures: number): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5));
  return base / 2 + Math.random() * (base / 2);
}

export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();
  /** Claims acquisitions, by key and claims: kept apart so that plain callers never get their tokens early. */
  readonly #ownInflight = new Map<string, Promise<CachedToken>>();
  readonly #max: number;
  readonly #now: () => number;
  readonly #events: CacheEvents;
  readonly #onRefreshError: ((key: string, error: unknown) => void) | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  #uses = 0;

  constructor(options: TokenCacheOptions) {
    this.#max = Math.max(1, options.maxEntries);
    // Read through Date each time (not a captured Date.now), so tests can move the clock of the whole process.
    this.#now = options.now ?? (() => Date.now());
    this.#events = options.events ?? {};
    this.#onRefreshError = options.onRefreshError;
    const interval = options.sweepIntervalMs ?? 1000;
    if (interval > 0) {
      this.#timer = setInterval(() => this.sweep(), interval);
      this.#timer.unref();
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The hot path: a fresh cached token, or undefined. Starts a background refresh when one is due. */
  lookup(key: string): CachedToken | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (now >= entry.staleAt) return undefined;
    entry.usedSinceRefresh = true;
    entry.lastUsed = ++this.#uses;
    if (this.#due(key, entry, now)) this.#refresh(key, entry);
    this.#events.hit?.();
    return entry.token;
  }

  /**
   * A fresh token: from memory, or acquired once however many callers ask at the same time.
   *
   * A plain request that fails while an unexpired token is cached gets that token (Entra is down, the
   * token is still good). A forced or claims request never does: the caller asked for a new token (or
   * for claims the cached one lacks), so it gets Entra's refusal, as Microsoft's sidecar answers.
   * Whatever the request, the entry keeps `load` (the plain loader) for its background refreshes.
   */
  async get(key: string, load: Loader, options: GetOptions = {}): Promise<CachedToken> {
    const bypass = options.force === true || options.own !== undefined;
    if (!bypass) {
      const hit = this.lookup(key);
      if (hit) return hit;
    }
    this.#events.miss?.();
    const refreshUntil = options.refreshUntil ?? Number.POSITIVE_INFINITY;
    if (options.own) {
      const ownKey = `${key}\u0000${options.own.id}`;
      let running = this.#ownInflight.get(ownKey);
      if (!running) {
        running = this.#store(key, options.own.load, load, refreshUntil).finally(() =>
          this.#ownInflight.delete(ownKey),
        );
        this.#ownInflight.set(ownKey, running);
      }
      return running;
    }
    const running = this.#inflight.get(key) ?? this.#acquire(key, options.run ?? load, load, refreshUntil);
    if (bypass) return running;
    try {
      return await running;
    } catch (error) {
      const fallback = this.#entries.get(key);
      if (fallback && this.#now() < fallback.token.expiresAt) return fallback.token;
      throw error;
    }
  }

  /** Renews due entries that were used since their last renewal, and drops expired ones. */
  sweep(): void {
    const now = this.#now();
    for (const [key, entry] of this.#entries) {
      if (now >= entry.token.expiresAt && !this.#inflight.has(key)) {
        this.#entries.delete(key);
        this.#events.evict?.();
      } else if (entry.usedSinceRefresh && this.#due(key, entry, now)) {
        this.#refresh(key, entry);
      }
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Drops every entry whose key contains `part` (a removed session's tokens). */
  deleteMatching(part: string): void {
    for (const key of this.#entries.keys()) if (key.includes(part)) this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  #leastRecentlyUsed(): string | undefined {
    let oldest: string | undefined;
    let oldestUse = Number.POSITIVE_INFINITY;
    for (const [key, entry] of this.#entries) {
      if (entry.lastUsed < oldestUse) {
        oldest = key;
        oldestUse = entry.lastUsed;
      }
    }
    return oldest;
  }

  /** A background refresh is due: inside the window, not backing off, not past the assertion, not running. */
  #due(key: string, entry: Entry, now: number): boolean {
    return (
      now >= entry.refreshAt && now >= entry.retryAt && now < entry.refreshUntil && !this.#inflight.has(key)
    );
  }

  #refresh(key: string, entry: Entry): void {
    this.#acquire(key, entry.load, entry.load, entry.refreshUntil).then(
      () => this.#events.refresh?.("ok"),
      (error: unknown) => {
        entry.failures += 1;
        entry.retryAt = this.#now() + refreshBackoff(entry.failures);
        this.#events.refresh?.("error");
        this.#onRefreshError?.(key, error);
      },
    );
  }

  /** A shared acquisition with the entry's own loader: joined by every concurrent caller of `key`. */
  #acquire(key: string, run: Loader, keep: Loader, refreshUntil: number): Promise<CachedToken> {
    const promise = this.#store(key, run, keep, refreshUntil).finally(() => {
      this.#inflight.delete(key);
    });
    this.#inflight.set(key, promise);
    return promise;
  }

  /** Runs `run`, stores its token under `key` with `keep` as the entry's loader, evicts beyond the bound. */
  #store(key: string, run: Loader, keep: Loader, refreshUntil: number): Promise<CachedToken> {
    const started = this.#now();
    return run().then((acquired) => {
      const token = toCached(acquired);
      const { refreshAt, staleAt } = schedule(acquired, started);
      this.#entries.set(key, {
        token,
        load: keep,
        refreshAt,
        refreshUntil,
        staleAt,
        usedSinceRefresh: false,
        lastUsed: ++this.#uses,
        retryAt: 0,
        failures: 0,
      });
      while (this.#entries.size > this.#max) {
        const oldest = this.#leastRecentlyUsed();
        if (oldest === undefined) break;
        this.#entries.delete(oldest);
        this.#events.evict?.();
      }
      return token;
    });
  }
}
