import { randomBytes } from "node:crypto";

/** Entra's refresh tokens for confidential clients live 90 days. */
export const REFRESH_TOKEN_LIFETIME_SECONDS = 90 * 86_400;

export interface RefreshRecord {
  tenantId: string;
  clientAppId: string;
  userOid: string;
  /** The flow that first issued it, kept for the log and the counters. */
  origin: "on_behalf_of" | "user_fic";
  /** Resource scope string of the original request (what a refresh without `scope` asks for again). */
  scope: string;
  expiresAt: number;
}

/**
 * Refresh tokens are opaque to clients, as Entra's are: a random handle to a record kept here. A used
 * refresh token stays valid until it expires (Entra does not revoke on redemption).
 */
export class RefreshTokenStore {
  readonly #records = new Map<string, RefreshRecord>();

  issue(record: Omit<RefreshRecord, "expiresAt">, now: number): string {
    // "1.A" prefix and no dots after it: never mistaken for a JWT.
    const token = `1.A${randomBytes(48).toString("base64url")}`;
    this.#records.set(token, { ...record, expiresAt: now + REFRESH_TOKEN_LIFETIME_SECONDS });
    return token;
  }

  get(token: string): RefreshRecord | undefined {
    return this.#records.get(token);
  }

  /** Test hook through the admin API: make every refresh token expire now. */
  expireAll(now: number): void {
    for (const record of this.#records.values()) record.expiresAt = now - 1;
  }
}
