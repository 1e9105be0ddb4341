import { TOKEN_EXCHANGE_AUDIENCE } from "../config/types.ts";
import type { LoadedCredential } from "../credentials.ts";
import type { MetricsSink } from "../metrics.ts";
import { ProblemError } from "../routes/problem.ts";
import type { AcquiredToken, CachedToken, GetOptions, TokenCache } from "../tokens/cache.ts";
import { cacheKey, type TokenRequest } from "../tokens/keys.ts";
import { type SessionStore, sessionId } from "../tokens/sessions.ts";
import { type ClientFactoryOptions, createClient } from "./clients.ts";
import type { AuthenticationResult, ConfidentialClientApplication } from "./msal.ts";
import { entraRefusal, loadMsal, type Msal } from "./msal.ts";
import { DEFAULT_RETRY, type RetryPolicy, withRetry } from "./retry.ts";

const EXCHANGE_SCOPE = `${TOKEN_EXCHANGE_AUDIENCE}/.default`;

/**
 * Entra errors that mean "this credential is not accepted": the next configured credential is tried.
 * The certificate codes are Microsoft.Identity.Web's CertificateErrorCodes (revoked, outside its
 * validity window, invalid signature).
 */
const CREDENTIAL_ERRORS =
  /AADSTS(7000215|7000222|700024|700027|70021|50012|7000214|1000502|7000274|7000277)\b/;

const NO_CREDENTIAL = new ProblemError(
  500,
  "No client credential is configured (AzureAd:ClientCredentials): this sidecar only validates tokens (/Validate).",
);

export interface TokenServiceOptions extends ClientFactoryOptions {
  clientId: string;
  credentials: LoadedCredential[];
  cache: TokenCache;
  /** Long-running OBO sessions (refresh tokens under the callers' session keys). */
  sessions?: SessionStore;
  metrics?: MetricsSink;
  retry?: RetryPolicy;
}

/**
 * The `exp` of an inbound assertion in epoch ms, read without verifying (the routes verified it, and
 * this only limits refreshes): undefined when it has none (pure).
 */
export function assertionExpiry(assertion: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(assertion.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      exp?: unknown;
    };
    return typeof payload.exp === "number" ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function toAcquired(result: AuthenticationResult | null): AcquiredToken {
  if (!result?.accessToken || !result.expiresOn) throw new Error("Entra returned no access token");
  return {
    accessToken: result.accessToken,
    expiresAt: result.expiresOn.getTime(),
    ...(result.refreshOn ? { refreshOn: result.refreshOn.getTime() } : {}),
  };
}

/**
 * Acquires tokens for every flow through msal-node, behind the sidecar's cache. The blueprint's
 * exchange token (T1, `fmi_path` = agent id) and the agent's own exchange token (T2, for agent users)
 * are cache entries like any other, so they are shared by all flows of that agent and refreshed ahead.
 */
export class TokenService {
  readonly #o: TokenServiceOptions;
  readonly #clients = new Map<string, ConfidentialClientApplication>();
  #credentialIndex = 0;

  constructor(options: TokenServiceOptions) {
    this.#o = options;
  }

  /** The hot path: a cached token for this key, or undefined. */
  lookup(key: string): CachedToken | undefined {
    return this.#o.cache.lookup(key);
  }

  /**
   * A token for the request, from the cache or Entra (single-flight per key). The cache entry's own
   * loader is the request without what belongs to this caller only (claims, ForceRefresh, correlation
   * id), so background refreshes never replay them; an OBO entry is never refreshed ahead past its
   * inbound assertion's expiry (Entra would refuse it: AADSTS500133).
   */
  async acquire(request: TokenRequest, key = cacheKey(request)): Promise<CachedToken> {
    const { claims, forceRefresh, correlationId, ...rest } = request;
    // A long-running session's entry refreshes with the session's refresh token, never the assertion.
    const { assertion, ...withoutAssertion } = rest;
    const neutral = request.sessionKey !== undefined ? withoutAssertion : rest;
    void assertion;
    const load = () => this.#load(neutral);
    const ownRun = claims !== undefined || correlationId !== undefined || neutral !== rest;
    const mine = ownRun ? () => this.#load(request) : undefined;
    const refreshUntil =
      request.assertion && request.sessionKey === undefined ? assertionExpiry(request.assertion) : undefined;
    const options: GetOptions = {
      ...(forceRefresh ? { force: true } : {}),
      ...(claims !== undefined && mine ? { own: { id: claims, load: mine } } : mine ? { run: mine } : {}),
      ...(refreshUntil !== undefined ? { refreshUntil } : {}),
    };
    try {
      const token = await this.#o.cache.get(key, load, options);
      this.#o.metrics?.tokenRequest(request.flow, "acquired");
      return token;
    } catch (error) {
      this.#o.metrics?.tokenRequest(request.flow, "error");
      throw error;
    }
  }

  /** Ends a long-running session: its refresh token and its cached tokens go. False when unknown. */
  endSession(sessionKey: string): boolean {
    const id = sessionId(sessionKey);
    this.#o.cache.deleteMatching(`session:${id}`);
    return this.#o.sessions?.delete(id) ?? false;
  }

  #authority(request: TokenRequest): string {
    return `${this.#o.instance}${request.tenant}`;
  }

  #blueprint(msal: Msal, tenant: string): ConfidentialClientApplication {
    const key = `blueprint\u0000${tenant.toLowerCase()}`;
    let client = this.#clients.get(key);
    if (!client) {
      const loaded = this.#o.credentials[this.#credentialIndex] ?? this.#o.credentials[0]!;
      client = createClient(msal, this.#o, this.#o.clientId, tenant, loaded.credential);
      this.#clients.set(key, client);
    }
    return client;
  }

  #agent(msal: Msal, tenant: string, agentId: string): ConfidentialClientApplication {
    const key = `agent\u0000${tenant.toLowerCase()}\u0000${agentId.toLowerCase()}`;
    let client = this.#clients.get(key);
    if (!client) {
      // The agent identity has no credential of its own: its assertion is the blueprint's T1.
      client = createClient(msal, this.#o, agentId, tenant, {
        kind: "callback",
        callback: async () => (await this.#exchangeToken(tenant, agentId)).accessToken,
      });
      this.#clients.set(key, client);
    }
    return client;
  }

  /** Leg 1: the blueprint's token for api://AzureADTokenExchange with fmi_path = agent id (T1). */
  #exchangeToken(tenant: string, agentId: string): Promise<CachedToken> {
    const request: TokenRequest = { flow: "app", tenant, scopes: [EXCHANGE_SCOPE], fmiPath: agentId };
    return this.#o.cache.get(cacheKey(request), () => this.#load(request));
  }

  /** Leg 2 for agent users: the agent identity's own exchange token (T2). */
  #agentExchangeToken(tenant: string, agentId: string): Promise<CachedToken> {
    const request: TokenRequest = { flow: "agent-app", tenant, agentId, scopes: [EXCHANGE_SCOPE] };
    return this.#o.cache.get(cacheKey(request), () => this.#load(request));
  }

  async #load(request: TokenRequest): Promise<AcquiredToken> {
    // Every flow starts from the blueprint's credential (agent flows through its exchange token).
    if (this.#o.credentials.length === 0) throw NO_CREDENTIAL;
    for (;;) {
      const index = this.#credentialIndex;
      try {
        return await withRetry(() => this.#call(request), this.#o.retry ?? DEFAULT_RETRY);
      } catch (error) {
        const usesBlueprintCredential = request.flow === "app" || request.flow === "obo";
        if (
          usesBlueprintCredential &&
          CREDENTIAL_ERRORS.test(entraRefusal(error) ?? "") &&
          index === this.#credentialIndex &&
          index + 1 < this.#o.credentials.length
        ) {
          this.#credentialIndex = index + 1;
          for (const key of [...this.#clients.keys()])
            if (key.startsWith("blueprint")) this.#clients.delete(key);
          this.#o.logger.warn(
            { rejected: this.#o.credentials[index]?.label, next: this.#o.credentials[index + 1]?.label },
            "Entra rejected the client credential; trying the next configured one",
          );
          continue;
        }
        throw error;
      }
    }
  }

  async #call(request: TokenRequest): Promise<AcquiredToken> {
    const msal = await loadMsal();
    const common = {
      authority: this.#authority(request),
      ...(request.claims ? { claims: request.claims } : {}),
      ...(request.correlationId ? { correlationId: request.correlationId } : {}),
    };
    let client: ConfidentialClientApplication;
    let result: AuthenticationResult | null;
    switch (request.flow) {
      case "app":
        client = this.#blueprint(msal, request.tenant);
        result = await client.acquireTokenByClientCredential({
          ...common,
          scopes: request.scopes,
          skipCache: true,
          ...(request.fmiPath ? { fmiPath: request.fmiPath } : {}),
        });
        break;
      case "agent-app":
        client = this.#agent(msal, request.tenant, request.agentId!);
        result = await client.acquireTokenByClientCredential({
          ...common,
          scopes: request.scopes,
          skipCache: true,
        });
        break;
      case "obo":
      case "agent-obo":
        client =
          request.flow === "obo"
            ? this.#blueprint(msal, request.tenant)
            : this.#agent(msal, request.tenant, request.agentId!);
        if (request.sessionKey !== undefined && request.assertion === undefined) {
          result = await this.#continueSession(client, request, common);
          break;
        }
        result = await client.acquireTokenOnBehalfOf({
          ...common,
          scopes: request.scopes,
          oboAssertion: request.assertion!,
          skipCache: true,
        });
        if (request.sessionKey !== undefined) this.#keepSession(client, request);
        break;
      case "agent-user": {
        const t2 = await this.#agentExchangeToken(request.tenant, request.agentId!);
        client = this.#agent(msal, request.tenant, request.agentId!);
        const user = request.user!;
        result = await client.acquireTokenByUserFederatedIdentityCredential({
          ...common,
          scopes: request.scopes,
          assertion: t2.accessToken,
          ...(user.kind === "oid" ? { userObjectId: user.value } : { username: user.value }),
        });
        break;
      }
    }
    // Our cache is the only one: msal-node's would otherwise grow with every user and assertion.
    client.clearCache();
    return toAcquired(result);
  }

  /** The refresh token msal-node just cached (Entra returns one with OBO tokens: offline_access). */
  #refreshTokenOf(client: ConfidentialClientApplication): string | undefined {
    const cache = JSON.parse(client.getTokenCache().serialize()) as {
      RefreshToken?: Record<string, { secret?: string }>;
    };
    return Object.values(cache.RefreshToken ?? {}).find((t) => t.secret)?.secret;
  }

  #keepSession(client: ConfidentialClientApplication, request: TokenRequest): void {
    const refreshToken = this.#refreshTokenOf(client);
    if (!this.#o.sessions) return;
    if (!refreshToken) {
      // Without one the session cannot go on past the user's token (Entra gives one with offline_access).
      this.#o.logger.warn(
        "Entra returned no refresh token with the OBO token: the long-running session was not kept",
      );
      return;
    }
    this.#o.sessions.set(sessionId(request.sessionKey!), {
      refreshToken,
      flow: request.flow as "obo" | "agent-obo",
      tenant: request.tenant.toLowerCase(),
      ...(request.agentId ? { agentId: request.agentId.toLowerCase() } : {}),
    });
  }

  async #continueSession(
    client: ConfidentialClientApplication,
    request: TokenRequest,
    common: { authority: string; claims?: string; correlationId?: string },
  ): Promise<AuthenticationResult | null> {
    const id = sessionId(request.sessionKey!);
    const session = this.#o.sessions?.get(id);
    if (!session)
      throw new ProblemError(
        401,
        "No long-running session for this LongRunningWebApiSessionKey: start it with the user's bearer token and the same key (it may have been removed, idle too long, or evicted).",
      );
    if (
      session.flow !== request.flow ||
      session.tenant !== request.tenant.toLowerCase() ||
      session.agentId !== request.agentId?.toLowerCase()
    )
      throw new ProblemError(
        403,
        "This long-running session was started for another agent identity or tenant.",
      );
    try {
      const result = await client.acquireTokenByRefreshToken({
        ...common,
        scopes: request.scopes,
        refreshToken: session.refreshToken,
      });
      // Entra may rotate the refresh token: keep the newest.
      const rotated = this.#refreshTokenOf(client);
      if (rotated) session.refreshToken = rotated;
      return result;
    } catch (error) {
      // The refresh token is expired or revoked (invalid_grant): the session is over.
      if (
        /invalid_grant|AADSTS(700082|70043|50173|70008)\b/.test(
          `${entraRefusal(error) ?? ""} ${(error as { errorCode?: string }).errorCode ?? ""}`,
        )
      )
        this.#o.sessions?.delete(id);
      throw error;
    }
  }
}
