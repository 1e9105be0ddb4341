/** A fault the admin API queued for the next token requests. */
export interface FaultSpec {
  count: number;
  /**
   * `claimsChallenge`: a Conditional Access refusal with a `claims` value (AADSTS50076/50079).
   * `issuerFetch`: not a token-request fault; the next `count` fetches of a federated issuer's discovery
   * document fail as if the issuer could not be reached, so the token requests that needed them get the
   * emulator's real AADSTS50166 answer (clientId and grant do not apply).
   */
  kind: "status" | "delay" | "drop" | "claimsChallenge" | "issuerFetch";
  status?: 500 | 503 | 429;
  retryAfterSeconds?: number;
  delayMs?: number;
  /** claimsChallenge: the AADSTS code (default 50076). */
  code?: 50076 | 50079;
  /** claimsChallenge: the `claims` JSON string; default Learn's shape with a new policy id. */
  claims?: string;
  /** Only requests of this client consume the fault. */
  clientId?: string;
  /** Only requests of this grant consume the fault (a key of /counters, e.g. `on_behalf_of`). */
  grant?: string;
}

export type GrantKey =
  | "client_credentials"
  | "client_credentials+fmi_path"
  | "on_behalf_of"
  | "user_fic"
  | "refresh_token";

/** The key a token request is counted under, from its parameters alone. */
export function grantKey(params: Record<string, string | undefined>): GrantKey | string {
  const grant = params.grant_type ?? "(none)";
  if (grant === "client_credentials")
    return params.fmi_path !== undefined ? "client_credentials+fmi_path" : grant;
  if (grant === "urn:ietf:params:oauth:grant-type:jwt-bearer") return "on_behalf_of";
  return grant;
}

/** Queued faults, consumed in order by the token requests they apply to. */
export class FaultQueue {
  #faults: FaultSpec[] = [];

  add(fault: FaultSpec): void {
    this.#faults.push({ ...fault });
  }

  clear(): void {
    this.#faults = [];
  }

  pending(): FaultSpec[] {
    return this.#faults.map((f) => ({ ...f }));
  }

  /** The fault this request gets, if any; decrements its count. */
  take(clientId: string | undefined, grant?: string): FaultSpec | undefined {
    const index = this.#faults.findIndex(
      (f) =>
        f.kind !== "issuerFetch" &&
        (f.clientId === undefined || f.clientId.toLowerCase() === (clientId ?? "").toLowerCase()) &&
        (f.grant === undefined || f.grant === grant),
    );
    const fault = this.#faults[index];
    if (!fault) return undefined;
    fault.count -= 1;
    if (fault.count <= 0) this.#faults.splice(index, 1);
    return fault;
  }

  /** True when a fetch of a federated issuer's metadata must fail now (an `issuerFetch` fault); consumes one. */
  takeIssuerFetch(): boolean {
    const index = this.#faults.findIndex((f) => f.kind === "issuerFetch");
    const fault = this.#faults[index];
    if (!fault) return false;
    fault.count -= 1;
    if (fault.count <= 0) this.#faults.splice(index, 1);
    return true;
  }
}

export interface CounterSnapshot {
  total: number;
  byClient: Record<string, Record<string, number>>;
  /**
   * Every request to the emulated Entra and Graph (not the admin API), by "METHOD /path" without the
   * query: proves that a component made no outbound call at all.
   */
  requests: { total: number; byRoute: Record<string, number> };
}

/** Token requests per client and grant, so tests can prove caching and coalescing. */
export class RequestCounters {
  #total = 0;
  #byClient = new Map<string, Map<string, number>>();
  #requests = 0;
  #byRoute = new Map<string, number>();

  /** Any request to an emulated endpoint (token, metadata, Graph). */
  recordRequest(method: string, path: string): void {
    this.#requests += 1;
    const key = `${method} ${path}`;
    this.#byRoute.set(key, (this.#byRoute.get(key) ?? 0) + 1);
  }

  record(clientId: string, key: string): void {
    this.#total += 1;
    const perClient = this.#byClient.get(clientId) ?? new Map<string, number>();
    perClient.set(key, (perClient.get(key) ?? 0) + 1);
    this.#byClient.set(clientId, perClient);
  }

  reset(): void {
    this.#total = 0;
    this.#byClient.clear();
    this.#requests = 0;
    this.#byRoute.clear();
  }

  snapshot(): CounterSnapshot {
    const byClient: Record<string, Record<string, number>> = {};
    for (const [client, counts] of this.#byClient) byClient[client] = Object.fromEntries(counts);
    return {
      total: this.#total,
      byClient,
      requests: { total: this.#requests, byRoute: Object.fromEntries(this.#byRoute) },
    };
  }
}
