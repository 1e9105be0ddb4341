import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSidecar } from "../../src/sidecar/start.ts";
import {
  type Answer,
  baseEnv,
  call,
  claimsOf,
  clientOf,
  type Downstream,
  type Emu,
  IDS,
  startDownstream,
  startEmu,
  startTestSidecar,
  type TestSidecar,
} from "./harness.ts";

/**
 * The agent lock (`Sidecar__AgentIdentity`, our addition that the webhook renders): a locked sidecar
 * acts as its agent only. Every refusal is a 403 problem, and nothing reaches Entra.
 */
let emu: Emu;
let downstream: Downstream;
let locked: TestSidecar;
let lenient: TestSidecar; // locked, with both exceptions allowed

function apis(): Record<string, string> {
  return {
    "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
    "DownstreamApis__graph-app__RequestAppToken": "true",
    DownstreamApis__graph__Scopes__0: "https://graph.microsoft.com/User.Read",
    DownstreamApis__weather__BaseUrl: `${downstream.url}/echo`,
    DownstreamApis__weather__Scopes__0: "api://contoso-weather/.default",
    DownstreamApis__weather__RequestAppToken: "true",
    "DownstreamApis__weather-user__BaseUrl": `${downstream.url}/echo`,
    "DownstreamApis__weather-user__Scopes__0": "api://contoso-weather/Forecast.Read",
    // Delegated Graph through the agent (the agent holds that grant).
    "DownstreamApis__graph-echo__BaseUrl": `${downstream.url}/echo`,
    "DownstreamApis__graph-echo__Scopes__0": "https://graph.microsoft.com/User.Read",
    Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
    Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated: "true",
    Sidecar__AgentIdentity: IDS.agent,
  };
}

function expectLocked(answer: Answer, detail: RegExp): void {
  expect(answer.status, answer.text).toBe(403);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(answer.json).toMatchObject({ status: 403, title: "Forbidden" });
  expect(String(answer.json.detail)).toMatch(detail);
}

beforeAll(async () => {
  emu = await startEmu();
  downstream = await startDownstream();
  locked = await startTestSidecar(emu, baseEnv(emu, apis()));
  lenient = await startTestSidecar(
    emu,
    baseEnv(emu, { ...apis(), Sidecar__AllowBlueprintToken: "true", Sidecar__AllowFmiPathOverride: "true" }),
  );
});

afterAll(async () => {
  await locked?.close();
  await lenient?.close();
  await downstream?.close();
  await emu?.close();
});

const OTHER = /locked to the agent identity 81c1b0a3-5f1f-4ddc-ac16-58eb49066eab.*AgentIdentity=1f6d3c1e/;
const BLUEPRINT = /blueprint's own token.*Sidecar:AllowBlueprintToken/;

describe("a sidecar locked to one agent (Sidecar__AgentIdentity)", () => {
  it("serves its agent's tokens on every route (the GUID in any casing)", async () => {
    const user = await emu.userToken();
    const bearer = { authorization: `Bearer ${user}` };
    const app = await call(
      `${locked.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent.toUpperCase()}`,
    );
    expect(clientOf(app)).toBe(IDS.agent);
    expect(claimsOf(app)).toMatchObject({ idtyp: "app" });
    const obo = await call(`${locked.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`, {
      headers: bearer,
    });
    expect(clientOf(obo)).toBe(IDS.agent);
    expect(claimsOf(obo)).toMatchObject({ oid: IDS.user });
    const agentUser = await call(
      `${locked.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&AgentUserId=${IDS.agentUser}`,
    );
    expect(clientOf(agentUser)).toBe(IDS.agent);
    expect(claimsOf(agentUser)).toMatchObject({ oid: IDS.agentUser });
    const viaUpn = await call(
      `${locked.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}&AgentUsername=${IDS.agentUserUpn}`,
      { headers: bearer },
    );
    expect(clientOf(viaUpn)).toBe(IDS.agent);
    expect(claimsOf(viaUpn)).toMatchObject({ oid: IDS.agentUser });
    const down = await call(`${locked.url}/DownstreamApiUnauthenticated/weather?AgentIdentity=${IDS.agent}`, {
      method: "POST",
    });
    expect(down.json.statusCode, down.text).toBe(200);
    const downUser = await call(`${locked.url}/DownstreamApi/graph-echo?AgentIdentity=${IDS.agent}`, {
      method: "POST",
      headers: bearer,
    });
    expect(downUser.json.statusCode, downUser.text).toBe(200);
  });

  it("refuses another agent on every route, agent users included, without calling Entra", async () => {
    const user = await emu.userToken();
    const bearer = { authorization: `Bearer ${user}` };
    await emu.resetCounters();
    const other = `AgentIdentity=${IDS.otherAgent}`;
    expectLocked(await call(`${locked.url}/AuthorizationHeaderUnauthenticated/graph-app?${other}`), OTHER);
    expectLocked(await call(`${locked.url}/AuthorizationHeader/graph?${other}`, { headers: bearer }), OTHER);
    expectLocked(
      await call(
        `${locked.url}/AuthorizationHeaderUnauthenticated/graph?${other}&AgentUserId=${IDS.agentUser}`,
      ),
      OTHER,
    );
    expectLocked(
      await call(`${locked.url}/DownstreamApiUnauthenticated/weather?${other}`, { method: "POST" }),
      OTHER,
    );
    expectLocked(
      await call(`${locked.url}/DownstreamApi/weather-user?${other}`, { method: "POST", headers: bearer }),
      OTHER,
    );
    // The exceptions do not open other agents.
    expectLocked(await call(`${lenient.url}/AuthorizationHeaderUnauthenticated/graph-app?${other}`), OTHER);
    expect((await emu.counters()).total).toBe(0);
    expect(downstream.requests.filter((r) => r.url.includes(IDS.otherAgent))).toEqual([]);
  });

  it("refuses the blueprint's own token (app or on behalf of a user) unless Sidecar__AllowBlueprintToken", async () => {
    const user = await emu.userToken();
    const bearer = { authorization: `Bearer ${user}` };
    await emu.resetCounters();
    expectLocked(await call(`${locked.url}/AuthorizationHeaderUnauthenticated/graph-app`), BLUEPRINT);
    expectLocked(
      await call(`${locked.url}/AuthorizationHeader/weather-user`, { headers: bearer }),
      BLUEPRINT,
    );
    expectLocked(
      await call(`${locked.url}/DownstreamApiUnauthenticated/weather`, { method: "POST" }),
      BLUEPRINT,
    );
    expectLocked(
      await call(`${locked.url}/DownstreamApi/weather-user`, { method: "POST", headers: bearer }),
      BLUEPRINT,
    );
    expect((await emu.counters()).total).toBe(0);
    const app = await call(`${lenient.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(clientOf(app)).toBe(IDS.blueprint);
    const obo = await call(`${lenient.url}/AuthorizationHeader/weather-user`, { headers: bearer });
    expect(clientOf(obo)).toBe(IDS.blueprint);
    expect(claimsOf(obo)).toMatchObject({ oid: IDS.user });
  });

  it("refuses an FmiPath override (the blueprint's exchange token for any agent) unless Sidecar__AllowFmiPathOverride", async () => {
    const fmi = `optionsOverride.Scopes=api://AzureADTokenExchange/.default&optionsOverride.AcquireTokenOptions.FmiPath=${IDS.otherAgent}`;
    expectLocked(
      await call(`${locked.url}/AuthorizationHeaderUnauthenticated/graph-app?${fmi}`),
      /FmiPath is refused unless Sidecar:AllowFmiPathOverride/,
    );
    expectLocked(
      await call(
        `${locked.url}/AuthorizationHeaderUnauthenticated/graph-app?${fmi}&AgentIdentity=${IDS.agent}`,
      ),
      /FmiPath is refused/,
    );
    const own = fmi.replace(IDS.otherAgent, IDS.agent);
    const allowed = await call(`${lenient.url}/AuthorizationHeaderUnauthenticated/graph-app?${own}`);
    expect(clientOf(allowed)).toBe(IDS.blueprint);
  });

  it("refuses to start with a lock that is not a GUID, or with a configured FmiPath under the lock", async () => {
    await expect(
      startSidecar({ env: baseEnv(emu, { ...apis(), Sidecar__AgentIdentity: "research-agent" }) }),
    ).rejects.toThrow(/Sidecar:AgentIdentity 'research-agent' is not/);
    await expect(
      startSidecar({
        env: baseEnv(emu, {
          ...apis(),
          "DownstreamApis__graph-app__AcquireTokenOptions__FmiPath": IDS.otherAgent,
        }),
      }),
    ).rejects.toThrow(/DownstreamApis:graph-app:AcquireTokenOptions:FmiPath is refused/);
  });
});
