import { createHash } from "node:crypto";

/**
 * Long-running OBO sessions (`optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey`,
 * Microsoft's scenario for an agent that keeps working for a user after the user's request): the
 * refresh token Entra returned with the OBO token, held under the caller's session key, so later
 * requests with the same key get tokens for that user without an inbound token.
 *
 * Bounded: at most `maxSessions` (the least recently used goes first) and dropped after `idleMs`
 * unused; removed on request (`DELETE /LongRunningSessions/{key}`) or when Entra refuses the refresh
 * token. The key is a secret of the caller's: only its SHA-256 is kept, never logged.
 */
export interface Session {
  refreshToken: string;
  flow: "obo" | "agent-obo";
  tenant: string;
  agentId?: string;
  lastUsed: number;
}

export function sessionId(sessionKey: string): string {
  return createHash("sha256").update(sessionKey).digest("base64url");
}

export interface SessionStoreOptions {
  maxSessions: number;
  idleMs: number;
  now?: () => number;
}

export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #o: SessionStoreOptions;
  readonly #now: () => number;

  constructor(options: SessionStoreOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => Date.now());
  }

  get size(): number {
    return this.#sessions.size;
  }

  get(id: string): Session | undefined {
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    const now = this.#now();
    if (now - session.lastUsed > this.#o.idleMs) {
      this.#sessions.delete(id);
      return undefined;
    }
    session.lastUsed = now;
    // Map order is the LRU order: re-inserting moves it to the newest end.
    this.#sessions.delete(id);
    this.#sessions.set(id, session);
    return session;
  }

  set(id: string, session: Omit<Session, "lastUsed">): void {
    this.#sessions.delete(id);
    this.#sessions.set(id, { ...session, lastUsed: this.#now() });
    while (this.#sessions.size > Math.max(1, this.#o.maxSessions)) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) break;
      this.#sessions.delete(oldest);
    }
  }

  delete(id: string): boolean {
    return this.#sessions.delete(id);
  }

  /** Drops sessions idle for longer than the bound. */
  sweep(): void {
    const now = this.#now();
    for (const [id, s] of this.#sessions) if (now - s.lastUsed > this.#o.idleMs) this.#sessions.delete(id);
  }
}
