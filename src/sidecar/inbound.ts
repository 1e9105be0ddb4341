import type { JWTPayload } from "jose";
import { isGuid } from "./config/values.ts";
import { KeysUnavailableError, RemoteKeySet } from "./jwks.ts";
import type { Outbound } from "./outbound.ts";

export interface InboundOptions {
  instance: string;
  tenantId: string;
  audiences: string[];
  outbound: Outbound;
  /** Minimum time between two JWKS downloads triggered by an unknown key id. */
  jwksCooldownMs?: number;
  /** .NET's default clock skew. */
  clockToleranceSeconds?: number;
  /** Verified tokens remembered (by their exact text) so a repeat caller is not re-verified. */
  maxRemembered?: number;
}

export class InvalidTokenError extends Error {
  override name = "InvalidTokenError";
}

interface Metadata {
  issuers: string[];
  keys: RemoteKeySet;
  jwtVerify: typeof import("jose").jwtVerify;
}

/**
 * Validates inbound bearer tokens for real: RS256 signature against the tenant's published keys
 * (cached, re-downloaded on an unknown key id, so key rollover works), issuer (v1 and v2 forms),
 * audience, expiry and not-before.
 */
export class InboundValidator {
  readonly #o: InboundOptions;
  #metadata: Promise<Metadata> | undefined;
  readonly #verified = new Map<string, { payload: JWTPayload; expiresAt: number }>();

  constructor(options: InboundOptions) {
    this.#o = options;
  }

  /** One OpenID configuration document: its issuer and key set URL. */
  async #document(url: string): Promise<{ issuer: string; jwks_uri: string }> {
    const host = new URL(url).host;
    let doc: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const response = await this.#o.outbound.request(url, {
        method: "GET",
        headers: { accept: "application/json" },
        timeoutMs: 10_000,
        maxResponseBytes: 1024 * 1024,
      });
      if (response.status !== 200) throw new Error(`answered HTTP ${response.status}`);
      doc = JSON.parse(response.body.toString("utf8")) as typeof doc;
    } catch (error) {
      throw new KeysUnavailableError(`the OpenID configuration at ${host}: ${(error as Error).message}`);
    }
    if (typeof doc?.issuer !== "string" || typeof doc.jwks_uri !== "string") {
      throw new KeysUnavailableError(`the OpenID configuration at ${host} lacks issuer or jwks_uri`);
    }
    return { issuer: doc.issuer, jwks_uri: doc.jwks_uri };
  }

  /**
   * The v2.0 document gives the v2 issuer and the keys; the v1.0 document (same authority, without
   * `v2.0/`) gives the v1 issuer, which differs by cloud (`sts.windows.net`, `sts.chinacloudapi.cn`, …),
   * so it is read, never assumed. The keys are the same for both versions.
   */
  async #loadMetadata(): Promise<Metadata> {
    const authority = `${this.#o.instance}${this.#o.tenantId}`;
    const [v2, v1] = await Promise.all([
      this.#document(`${authority}/v2.0/.well-known/openid-configuration`),
      this.#document(`${authority}/.well-known/openid-configuration`),
    ]);
    const doc = v2;
    const issuers = [...new Set([v2.issuer, v1.issuer])];
    // jose is loaded on the first inbound token, not at start-up: many sidecars never see one.
    const { createLocalJWKSet, jwtVerify } = await import("jose");
    const keys = new RemoteKeySet({
      url: doc.jwks_uri,
      outbound: this.#o.outbound,
      createLocalJWKSet,
      cooldownMs: this.#o.jwksCooldownMs ?? 5000,
    });
    return { issuers, keys, jwtVerify };
  }

  #metadataOnce(): Promise<Metadata> {
    if (!this.#metadata) {
      this.#metadata = this.#loadMetadata().catch((error: unknown) => {
        this.#metadata = undefined;
        throw error;
      });
    }
    return this.#metadata;
  }

  /** Verifies a token; throws InvalidTokenError (caller's fault) or another Error (ours or Entra's). */
  async verify(token: string): Promise<JWTPayload> {
    const now = Date.now();
    const known = this.#verified.get(token);
    if (known && now < known.expiresAt) return known.payload;
    const { issuers, keys, jwtVerify } = await this.#metadataOnce();
    // A multi-tenant authority (`common`) publishes `https://…/{tenantid}/v2.0`: the token's own `tid`
    // fills it in and the result must equal its `iss`; checked after the signature, below.
    const templated = issuers.some((i) => i.includes("{tenantid}"));
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys.getKey, {
        ...(templated ? {} : { issuer: issuers }),
        audience: this.#o.audiences,
        algorithms: ["RS256"],
        clockTolerance: this.#o.clockToleranceSeconds ?? 300,
        requiredClaims: ["exp"],
      }));
    } catch (error) {
      // Keys we could not load are our (or Entra's) failure, not a bad token.
      if (error instanceof KeysUnavailableError) throw error;
      throw new InvalidTokenError((error as Error).message);
    }
    if (templated && !issuerMatches(issuers, payload))
      throw new InvalidTokenError('unexpected "iss" claim value');
    const max = this.#o.maxRemembered ?? 1000;
    if (this.#verified.size >= max) {
      const oldest = this.#verified.keys().next().value;
      if (oldest !== undefined) this.#verified.delete(oldest);
    }
    this.#verified.set(token, { payload, expiresAt: Math.min((payload.exp ?? 0) * 1000, now + 10 * 60_000) });
    return payload;
  }
}

/**
 * Whether a verified token's `iss` is one of the issuers, `{tenantid}` standing for the token's own
 * `tid` (a GUID), as Microsoft.IdentityModel's AadIssuerValidator does for multi-tenant authorities (pure).
 */
export function issuerMatches(issuers: string[], payload: JWTPayload): boolean {
  const tid = payload.tid;
  return issuers.some((i) =>
    i.includes("{tenantid}")
      ? typeof tid === "string" && isGuid(tid) && i.replace("{tenantid}", tid) === payload.iss
      : i === payload.iss,
  );
}

/** The token from `Authorization: Bearer <token>`, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
