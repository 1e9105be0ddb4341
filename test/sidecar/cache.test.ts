import { describe, expect, it } from "vitest";
import { type AcquiredToken, schedule, serialiseHeader, TokenCache } from "../../src/sidecar/tokens/cache.ts";
import { cacheKey } from "../../src/sidecar/tokens/keys.ts";

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function loaderFor(c: { now: () => number }, lifetimeMs = 3_600_000) {
  let n = 0;
  const load = async (): Promise<AcquiredToken> => {
    n += 1;
    return { accessToken: `token-${n}`, expiresAt: c.now() + lifetimeMs };
  };
  return { load, calls: () => n };
}

const flush = () => new Promise((r) => setImmediate(r));

describe("TokenCache", () => {
  it("acquires once for any number of concurrent callers", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const { load, calls } = loaderFor(c);
    const tokens = await Promise.all(Array.from({ length: 50 }, () => cache.get("k", load)));
    expect(calls()).toBe(1);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(["token-1"]));
    expect(cache.lookup("k")?.headerBody).toBe('{"authorizationHeader":"Bearer token-1"}');
  });

  it("refreshes ahead of expiry in the background and keeps serving meanwhile", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const { load, calls } = loaderFor(c);
    await cache.get("k", load);
    c.advance(3_600_000 - 4 * 60_000); // inside the 5-minute refresh window
    expect(cache.lookup("k")?.accessToken).toBe("token-1");
    await flush();
    expect(calls()).toBe(2);
    expect(cache.lookup("k")?.accessToken).toBe("token-2");
  });

  it("the sweep refreshes used entries and drops expired ones", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const used = loaderFor(c);
    const unused = loaderFor(c);
    await cache.get("used", used.load);
    await cache.get("unused", unused.load);
    cache.lookup("used");
    c.advance(3_600_000 - 60_000);
    cache.sweep();
    await flush();
    expect(used.calls()).toBe(2);
    expect(unused.calls()).toBe(1);
    c.advance(120_000);
    cache.sweep();
    expect(cache.lookup("unused")).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it("is bounded: least recently used entries go first", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 2, sweepIntervalMs: 0, now: c.now });
    const { load } = loaderFor(c);
    await cache.get("a", load);
    await cache.get("b", load);
    cache.lookup("a");
    await cache.get("c", load);
    expect(cache.size).toBe(2);
    expect(cache.lookup("b")).toBeUndefined();
    expect(cache.lookup("a")).toBeDefined();
  });

  it("serves a still-valid token when acquisition fails, and fails once it has expired", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    await cache.get("k", async () => ({ accessToken: "old", expiresAt: c.now() + 600_000 }));
    const failing = async (): Promise<AcquiredToken> => {
      throw new Error("entra down");
    };
    c.advance(590_000); // stale: a plain get goes to Entra, which fails
    expect((await cache.get("k", failing)).accessToken).toBe("old");
    c.advance(10_001);
    await expect(cache.get("k", failing)).rejects.toThrow("entra down");
  });

  it("never falls back to the cached token for a forced or claims request", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    await cache.get("k", async () => ({ accessToken: "old", expiresAt: c.now() + 600_000 }));
    const refused = async (): Promise<AcquiredToken> => {
      throw new Error("AADSTS7000215: invalid secret");
    };
    await expect(cache.get("k", refused, { force: true })).rejects.toThrow("AADSTS7000215");
    await expect(
      cache.get("k", refused, { own: { id: '{"access_token":{}}', load: refused } }),
    ).rejects.toThrow("AADSTS7000215");
    // The cached token is untouched for plain callers.
    expect(cache.lookup("k")?.accessToken).toBe("old");
  });

  it("keeps the plain loader on the entry after a claims or correlated request", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const calls: string[] = [];
    const loader = (name: string) => async (): Promise<AcquiredToken> => {
      calls.push(name);
      return { accessToken: `${name}-${calls.length}`, expiresAt: c.now() + 3_600_000 };
    };
    await cache.get("k", loader("plain"), { run: loader("correlated") });
    const claimed = await cache.get("k", loader("plain"), { own: { id: "c", load: loader("claims") } });
    expect(claimed.accessToken).toBe("claims-2");
    // The claims token replaces the cached one (as MSAL's cache does)…
    expect(cache.lookup("k")?.accessToken).toBe("claims-2");
    // …but the background refresh runs the plain loader, not the caller's claims or correlation id.
    c.advance(3_600_000 - 60_000);
    cache.sweep();
    await flush();
    expect(calls).toEqual(["correlated", "claims", "plain"]);
  });

  it("does not let plain callers join a claims acquisition, nor claims callers a plain one", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const { load, calls } = loaderFor(c);
    let claimsCalls = 0;
    const claims = async (): Promise<AcquiredToken> => {
      claimsCalls += 1;
      return { accessToken: "with-claims", expiresAt: c.now() + 3_600_000 };
    };
    const [plain, own1, own2] = await Promise.all([
      cache.get("k", load),
      cache.get("k", load, { own: { id: "c", load: claims } }),
      cache.get("k", load, { own: { id: "c", load: claims } }),
    ]);
    expect(plain.accessToken).toBe("token-1");
    expect(own1.accessToken).toBe("with-claims");
    expect(own2).toBe(own1);
    expect([calls(), claimsCalls]).toEqual([1, 1]);
  });

  it("never refreshes ahead past refreshUntil (an OBO entry whose user token expires first)", async () => {
    const c = clock();
    const cache = new TokenCache({ maxEntries: 10, sweepIntervalMs: 0, now: c.now });
    const { load, calls } = loaderFor(c, 150_000);
    // User token valid 40 s, OBO token 150 s: the refresh window opens at 112.5 s, after the user token.
    await cache.get("obo", load, { refreshUntil: c.now() + 40_000 });
    for (let t = 0; t < 14; t++) {
      c.advance(10_000);
      cache.lookup("obo");
      cache.sweep();
      await flush();
    }
    expect(calls()).toBe(1);
    // It is still served until it goes stale, then the caller gets a miss (and Entra's answer).
    c.advance(-10_000);
    expect(cache.lookup("obo")?.accessToken).toBe("token-1");
  });

  it("backs off after a failed background refresh", async () => {
    const c = clock();
    const errors: unknown[] = [];
    const cache = new TokenCache({
      maxEntries: 10,
      sweepIntervalMs: 0,
      now: c.now,
      onRefreshError: (_k, e) => errors.push(e),
    });
    let attempts = 0;
    await cache.get("k", async () => {
      attempts += 1;
      if (attempts > 1) throw new Error("down");
      return { accessToken: "t", expiresAt: c.now() + 3_600_000 };
    });
    c.advance(3_600_000 - 120_000);
    cache.lookup("k");
    await flush();
    cache.lookup("k");
    await flush();
    expect(attempts).toBe(2);
    expect(errors).toHaveLength(1);
  });
});

describe("schedule and keys", () => {
  it("renews five minutes early for long tokens and a quarter early for short ones", () => {
    expect(schedule({ accessToken: "", expiresAt: 3_600_000 }, 0)).toEqual({
      refreshAt: 3_300_000,
      staleAt: 3_540_000,
    });
    expect(schedule({ accessToken: "", expiresAt: 8000 }, 0)).toEqual({ refreshAt: 6000, staleAt: 7200 });
    expect(schedule({ accessToken: "", expiresAt: 3_600_000, refreshOn: 1_800_000 }, 0).refreshAt).toBe(
      1_800_000,
    );
  });

  it("escapes the token in the pre-serialised body", () => {
    expect(JSON.parse(serialiseHeader('a"b'))).toEqual({ authorizationHeader: 'Bearer a"b' });
  });

  it("separates tenants, agents, users, scopes and assertions; ignores scope order and case", () => {
    const base = {
      flow: "agent-user" as const,
      tenant: "T",
      scopes: ["b", "A"],
      agentId: "X",
      user: { kind: "upn" as const, value: "U@x" },
    };
    const k = cacheKey(base);
    expect(cacheKey({ ...base, scopes: ["a", "B"] })).toBe(k);
    expect(cacheKey({ ...base, tenant: "other" })).not.toBe(k);
    expect(cacheKey({ ...base, agentId: "Y" })).not.toBe(k);
    expect(cacheKey({ ...base, user: { kind: "oid", value: "U@x" } })).not.toBe(k);
    expect(cacheKey({ ...base, scopes: ["a"] })).not.toBe(k);
    const obo = { flow: "obo" as const, tenant: "T", scopes: ["s"], assertion: "token-1" };
    expect(cacheKey(obo)).not.toBe(cacheKey({ ...obo, assertion: "token-2" }));
    expect(cacheKey(obo)).not.toContain("token-1");
  });
});
