import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionStore } from "../../src/sidecar/tokens/sessions.ts";
import {
  baseEnv,
  call,
  claimsOf,
  clientOf,
  type Emu,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
  tokenOf,
} from "./harness.ts";

/**
 * Long-running OBO (Microsoft's scenario: an agent keeps working for a user after the user's request):
 * started with the user's token and a session key, continued with the key alone through the refresh
 * token Entra returned, ended on request.
 */
let emu: Emu;
let s: TestSidecar;
const KEY = "report-job-7f3a9c";
const SESSION = `optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=${KEY}`;

beforeAll(async () => {
  emu = await startEmu();
  s = await startTestSidecar(
    emu,
    baseEnv(emu, {
      DownstreamApis__graph__Scopes__0: "https://graph.microsoft.com/User.Read",
      Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
    }),
  );
});
afterAll(async () => {
  await s?.close();
  await emu?.close();
});

describe("long-running OBO sessions", () => {
  it("starts with the user's token, continues with the key alone (refresh token), and ends on request", async () => {
    const user = await emu.userToken();
    await emu.resetCounters();
    const started = await call(`${s.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}&${SESSION}`, {
      headers: { authorization: `Bearer ${user}` },
    });
    expect(clientOf(started)).toBe(IDS.agent);
    expect(claimsOf(started)).toMatchObject({ oid: IDS.user });
    // Later, without the user: the session's cached token…
    const later = `${s.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&${SESSION}`;
    expect(tokenOf(await call(later))).toBe(tokenOf(started));
    // …and a new one from the session's refresh token when asked.
    const renewed = await call(`${later}&optionsOverride.AcquireTokenOptions.ForceRefresh=true`);
    expect(clientOf(renewed)).toBe(IDS.agent);
    expect(claimsOf(renewed)).toMatchObject({ oid: IDS.user });
    expect(tokenOf(renewed)).not.toBe(tokenOf(started));
    const counts = (await emu.counters()).byClient[IDS.agent];
    expect(counts).toMatchObject({ on_behalf_of: 1, refresh_token: 1 });
    // The key never reaches the logs.
    expect(s.logs.join("")).not.toContain(KEY);

    const ended = await call(`${s.url}/LongRunningSessions/${KEY}`, { method: "DELETE" });
    expect(ended.status).toBe(204);
    const gone = await call(later);
    expect(gone.status).toBe(401);
    expect(String(gone.json.detail)).toMatch(/No long-running session/);
    expect((await call(`${s.url}/LongRunningSessions/${KEY}`, { method: "DELETE" })).status).toBe(404);
  });

  it("keeps a session to the agent that started it, and refuses AllocateForMe", async () => {
    const user = await emu.userToken();
    const key = "other-agent-session-1";
    const started = await call(
      `${s.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}&optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=${key}`,
      { headers: { authorization: `Bearer ${user}` } },
    );
    expect(started.status, started.text).toBe(200);
    const stolen = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.otherAgent}&optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=${key}`,
    );
    expect(stolen.status).toBe(403);
    const auto = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=AllocateForMe`,
    );
    expect(auto.status).toBe(400);
    expect(String(auto.json.detail)).toMatch(/choose your own/);
  });
});

describe("SessionStore bounds", () => {
  it("evicts the least recently used beyond its size and drops idle sessions", () => {
    let now = 0;
    const store = new SessionStore({ maxSessions: 2, idleMs: 1000, now: () => now });
    const session = { refreshToken: "rt", flow: "obo" as const, tenant: "t" };
    store.set("a", session);
    store.set("b", session);
    expect(store.get("a")).toBeDefined(); // a is now the most recently used
    store.set("c", session);
    expect([
      store.get("a") !== undefined,
      store.get("b") !== undefined,
      store.get("c") !== undefined,
    ]).toEqual([true, false, true]);
    now = 1001;
    store.sweep();
    expect(store.size).toBe(0);
    store.set("d", session);
    now = 2002;
    expect(store.get("d")).toBeUndefined();
  });
});
