import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  baseEnv,
  call,
  claimsOf,
  type Emu,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
  tokenOf,
} from "./harness.ts";

const APP_API = {
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
  DownstreamApis__graph__Scopes__0: "https://graph.microsoft.com/User.Read",
  "DownstreamApis__weather-user__Scopes__0": "api://contoso-weather/Forecast.Read",
  Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
};
const FAST_RETRY = { attempts: 4, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 5000 };

let emu: Emu;
const started: TestSidecar[] = [];

async function sidecar(extra: Record<string, string> = {}, options = {}): Promise<TestSidecar> {
  const s = await startTestSidecar(emu, baseEnv(emu, { ...APP_API, ...extra }), {
    retry: FAST_RETRY,
    ...options,
  });
  started.push(s);
  return s;
}

beforeAll(async () => {
  emu = await startEmu();
});
afterEach(async () => {
  await emu.admin("DELETE", "faults");
  await emu.admin("POST", "settings", { accessTokenLifetimeSeconds: 3599 });
  await emu.resetCounters();
});
afterAll(async () => {
  for (const s of started) await s.close();
  await emu?.close();
});

describe("single flight", () => {
  it("200 concurrent cold requests for an agent token make one request per leg", async () => {
    const s = await sidecar();
    await emu.resetCounters();
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`),
      ),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(new Set(answers.map(tokenOf)).size).toBe(1);
    const counters = await emu.counters();
    expect(counters.byClient[IDS.blueprint]).toEqual({ "client_credentials+fmi_path": 1 });
    expect(counters.byClient[IDS.agent]).toEqual({ client_credentials: 1 });
    expect(counters.total).toBe(2);
  });

  it("200 concurrent cold requests for an agent user's token make one request per leg", async () => {
    const s = await sidecar();
    await emu.resetCounters();
    const url = `${s.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&AgentUserId=${IDS.agentUser}`;
    const answers = await Promise.all(Array.from({ length: 200 }, () => call(url)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const counters = await emu.counters();
    expect(counters.byClient[IDS.blueprint]).toEqual({ "client_credentials+fmi_path": 1 });
    expect(counters.byClient[IDS.agent]).toEqual({ client_credentials: 1, user_fic: 1 });
    // Cached afterwards: Microsoft's sidecar went to the network for every agent-user call.
    await call(url);
    expect((await emu.counters()).total).toBe(3);
  });

  it("200 concurrent cold OBO requests with one user token make one on_behalf_of request", async () => {
    const s = await sidecar();
    const user = await emu.userToken();
    await emu.resetCounters();
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        call(`${s.url}/AuthorizationHeader/weather-user`, { headers: { authorization: `Bearer ${user}` } }),
      ),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect((await emu.counters()).byClient[IDS.blueprint]).toEqual({ on_behalf_of: 1 });
  });
});

describe("refresh ahead of expiry", () => {
  it("renews a token in the background before it goes stale: callers never miss the cache", async () => {
    // The cache's clock runs ahead of the wall clock on demand, instead of the test waiting for tokens
    // to age. Tokens live an hour (the emulator's default): renewal is due 5 minutes before expiry,
    // and a token stops being served 1 minute before expiry.
    let ahead = 0;
    const s = await sidecar({}, { metricsPort: 0, metricsHost: "127.0.0.1", now: () => Date.now() + ahead });
    const url = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app`;
    const metrics = async () => (await fetch(String(s.sidecar.metricsUrl))).text();
    const cacheEvents = async (event: string) =>
      Number(
        new RegExp(`agentid_sidecar_token_cache_events_total\\{event="${event}"\\} (\\d+)`).exec(
          await metrics(),
        )?.[1] ?? 0,
      );

    const first = await call(url);
    expect(first.status).toBe(200);
    expect(Number(claimsOf(first).exp) * 1000).toBeGreaterThan(Date.now());
    expect(await cacheEvents("refresh_ok")).toBe(0);

    ahead = 56 * 60_000; // past the renewal point, before the stale point
    const during = await call(url);
    expect(during.status).toBe(200);
    // Served from the cache at once; the renewal runs behind it.
    expect(tokenOf(during)).toBe(tokenOf(first));
    await expect.poll(() => cacheEvents("refresh_ok"), { timeout: 10_000 }).toBeGreaterThan(0);

    const after = await call(url);
    expect(after.status).toBe(200);
    expect(tokenOf(after)).not.toBe(tokenOf(first));
    const text = await metrics();
    expect(text).toMatch(/agentid_sidecar_token_cache_events_total\{event="miss"\} 1\n/);
    expect(text).toMatch(/agentid_sidecar_entra_request_duration_seconds_count\{status="200"\} [2-9]/);
    expect(text).toMatch(
      /agentid_sidecar_http_requests_total\{route="\/AuthorizationHeaderUnauthenticated\/:apiName",status="200"\} 3\n/,
    );
  });
});

describe("OBO refresh and the user's token", () => {
  it("never refreshes an OBO token ahead past the inbound token's expiry (AADSTS500133 otherwise)", async () => {
    // OBO tokens outlive the user token here (150 s against 40 s), as they can at Entra.
    await emu.admin("POST", "settings", { accessTokenLifetimeSeconds: 150 });
    const s = await sidecar();
    const user = await emu.userToken({ lifetimeSeconds: 40 });
    const start = Date.now();
    // Only Date is faked, for the sidecar and the emulator alike (one process): timers stay real.
    vi.useFakeTimers({ toFake: ["Date"], now: start });
    try {
      await emu.resetCounters();
      const url = `${s.url}/AuthorizationHeader/weather-user`;
      const headers = { authorization: `Bearer ${user}` };
      const first = await call(url, { headers });
      expect(first.status, first.text).toBe(200);
      // Through the refresh window (from 112.5 s) and to just before the OBO token goes stale (135 s).
      for (let t = 10; t <= 130; t += 10) {
        vi.setSystemTime(start + t * 1000);
        const r = await call(url, { headers });
        expect(r.status).toBe(200);
        expect(tokenOf(r)).toBe(tokenOf(first));
      }
      await call(`${s.url}/healthz`);
      expect((await emu.counters()).byClient[IDS.blueprint]).toEqual({ on_behalf_of: 1 });
      expect(s.logs.join("")).not.toMatch(/500133/);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("Entra faults", () => {
  async function freshAppToken(s: TestSidecar) {
    return call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
  }
  const blueprintCount = async () => (await emu.counters()).byClient[IDS.blueprint]?.client_credentials ?? 0;

  it("retries 500s with backoff", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", { count: 2, kind: "status", status: 500, clientId: IDS.blueprint });
    expect((await freshAppToken(s)).status).toBe(200);
    expect(await blueprintCount()).toBe(3);
  });

  it("waits for Retry-After on 429", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", {
      count: 1,
      kind: "status",
      status: 429,
      retryAfterSeconds: 1,
      clientId: IDS.blueprint,
    });
    expect((await freshAppToken(s)).status).toBe(200);
    expect(await blueprintCount()).toBe(2);
  });

  it("does not wait for a Retry-After beyond its bound: 401 at once", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", {
      count: 5,
      kind: "status",
      status: 429,
      retryAfterSeconds: 600,
      clientId: IDS.blueprint,
    });
    const r = await freshAppToken(s);
    expect(r.status).toBe(401);
    expect(r.json.detail).toMatch(/429/);
    expect(await blueprintCount()).toBe(1);
  });

  it("times out a slow Entra and retries", async () => {
    const s = await sidecar({}, { entraTimeoutMs: 500 });
    await emu.admin("POST", "faults", { count: 1, kind: "delay", delayMs: 3000, clientId: IDS.blueprint });
    expect((await freshAppToken(s)).status).toBe(200);
    expect(await blueprintCount()).toBe(2);
  });

  it("retries a dropped connection", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", { count: 1, kind: "drop", clientId: IDS.blueprint });
    expect((await freshAppToken(s)).status).toBe(200);
    expect(await blueprintCount()).toBe(2);
  });

  it("bounds the retries and answers 401 when Entra keeps failing", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", { count: 50, kind: "status", status: 503, clientId: IDS.blueprint });
    const r = await freshAppToken(s);
    expect(r.status).toBe(401);
    expect(r.headers.get("content-type")).toMatch(/problem\+json/);
    expect(await blueprintCount()).toBe(FAST_RETRY.attempts);
  });

  it("keeps serving a still-valid cached token while Entra is down, but never to a forced or claims request", async () => {
    const s = await sidecar();
    const first = tokenOf(await freshAppToken(s));
    await emu.admin("POST", "faults", { count: 50, kind: "status", status: 503, clientId: IDS.blueprint });
    const base = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app`;
    const forced = await call(`${base}?optionsOverride.AcquireTokenOptions.ForceRefresh=true`);
    expect(forced.status, forced.text).toBe(401);
    expect(forced.text).not.toContain(first);
    const claims = encodeURIComponent('{"access_token":{"xms_cc":{"values":["cp1"]}}}');
    const stepUp = await call(`${base}?optionsOverride.AcquireTokenOptions.Claims=${claims}`);
    expect(stepUp.status, stepUp.text).toBe(401);
    expect(stepUp.json.detail).toMatch(/503/);
    const plain = await freshAppToken(s);
    expect(plain.status).toBe(200);
    expect(tokenOf(plain)).toBe(first);
  });
});

describe("nested legs", () => {
  it("a failing first leg is retried within its bound, not once more per enclosing leg", async () => {
    const s = await sidecar();
    await emu.admin("POST", "faults", { count: 100, kind: "status", status: 503, clientId: IDS.blueprint });
    const r = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&AgentUserId=${IDS.agentUser}`,
    );
    expect(r.status).toBe(401);
    const counters = await emu.counters();
    expect(counters.byClient[IDS.blueprint]?.["client_credentials+fmi_path"]).toBe(FAST_RETRY.attempts);
    expect(counters.byClient[IDS.agent]).toBeUndefined();
  });
});
