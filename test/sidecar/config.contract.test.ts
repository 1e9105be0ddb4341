import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  baseEnv,
  call,
  claimsOf,
  clientOf,
  type Emu,
  freePort,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
} from "./harness.ts";

/** What a user migrating from Microsoft's sidecar configures, run against a real sidecar and the emulator. */
let emu: Emu;
const dir = mkdtempSync(join(tmpdir(), "agentid-sidecar-config-"));
const started: TestSidecar[] = [];

beforeAll(async () => {
  emu = await startEmu();
});
afterAll(async () => {
  for (const s of started) await s.close();
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function sidecar(env: Record<string, string>, appSettings?: string): Promise<TestSidecar> {
  let path: string | undefined;
  if (appSettings !== undefined) {
    path = join(dir, `appsettings-${started.length}.json`);
    writeFileSync(path, appSettings);
  }
  const s = await startTestSidecar(emu, env, path ? { appSettingsPath: path } : {});
  started.push(s);
  return s;
}

const warnings = (s: TestSidecar) =>
  s.logs
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((l) => l.level === 40)
    .map((l) => l.msg);

describe("configuration a migrating user brings", () => {
  it("reads appsettings.json with comments and trailing commas (Microsoft's template), AzureAd:Authority and any Kestrel endpoint name", async () => {
    const port = await freePort();
    const s = await sidecar(
      {},
      `{
  // Microsoft's template style
  "AzureAd": {
    "Authority": "${emu.emulator.url}/${IDS.tenant}/v2.0", /* instead of Instance + TenantId */
    "ClientId": "${IDS.blueprint}",
    "ClientCredentials": [
      { "SourceType": "ClientSecret", "ClientSecret": "${IDS.blueprintSecret}", },
    ],
    "SendX5C": true,
    "ClientCapabilities": [ "cp1" ],
  },
  "DownstreamApis": {
    "graph-app": { "Scopes": [ "https://graph.microsoft.com/.default" ], "RequestAppToken": true, },
  },
  "Kestrel": { "Endpoints": { "Sidecar": { "Url": "http://127.0.0.1:${port}" } } },
  "Logging": { "LogLevel": { "Default": "Information", "Microsoft.Identity.Web": "Debug" } },
}
`,
    );
    expect(s.url).toBe(`http://127.0.0.1:${port}`);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(clientOf(r)).toBe(IDS.blueprint);
    expect(claimsOf(r)).toMatchObject({ tid: IDS.tenant });
    // Every key it does not act on is named at start-up, with the doc section.
    const w = warnings(s);
    for (const key of [
      "AzureAd:SendX5C",
      "AzureAd:ClientCapabilities:0",
      "Logging:LogLevel:Microsoft.Identity.Web",
    ])
      expect(w).toContain(
        `${key} is not supported by this sidecar and is ignored (docs/compatibility.md, "Configuration keys not read")`,
      );
    expect(w.join("\n")).not.toMatch(/ClientId|Authority|Kestrel/);
  });

  it("names the line and column of a JSON error, never the text there", async () => {
    const path = join(dir, "broken.json");
    writeFileSync(path, `{\n  "AzureAd": { "ClientSecret": "hunter2" ]\n}`);
    await expect(startTestSidecar(emu, {}, { appSettingsPath: path })).rejects.toThrow(
      /broken\.json: not valid JSON at line 2, column \d+/,
    );
    await expect(startTestSidecar(emu, {}, { appSettingsPath: path })).rejects.not.toThrow(/hunter2/);
  });

  it("ignores Authority, with a warning, when Instance and TenantId are set (Microsoft.Identity.Web's rule)", async () => {
    const s = await sidecar(
      baseEnv(emu, {
        AzureAd__Authority: "https://login.microsoftonline.com/another-tenant.example/v2.0",
        "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
        "DownstreamApis__graph-app__RequestAppToken": "true",
      }),
    );
    expect(warnings(s).join("\n")).toMatch(/AzureAd:Authority is ignored because/);
    expect((await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`)).status).toBe(200);
  });

  it("TenantId=common (Microsoft's OBO example): OBO in the user's tenant; app and agent tokens ask for a tenant", async () => {
    const s = await sidecar(
      baseEnv(emu, {
        AzureAd__TenantId: "common",
        DownstreamApis__graph__Scopes__0: "https://graph.microsoft.com/User.Read",
        "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
        "DownstreamApis__graph-app__RequestAppToken": "true",
        Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
      }),
    );
    expect(warnings(s).join("\n")).toMatch(/AzureAd:TenantId 'common': tokens on behalf of a user/);
    const user = await emu.userToken();
    const bearer = { authorization: `Bearer ${user}` };
    const obo = await call(`${s.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`, {
      headers: bearer,
    });
    expect(clientOf(obo)).toBe(IDS.agent);
    expect(claimsOf(obo)).toMatchObject({ oid: IDS.user, tid: IDS.tenant });
    const validated = await call(`${s.url}/Validate`, { headers: bearer });
    expect(validated.status, validated.text).toBe(200);
    const app = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
    );
    expect(app.status, app.text).toBe(400);
    expect(String(app.json.detail)).toMatch(/needs a tenant/);
    const pinned = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}&optionsOverride.AcquireTokenOptions.Tenant=${IDS.tenant}`,
    );
    expect(clientOf(pinned)).toBe(IDS.agent);
    expect(claimsOf(pinned)).toMatchObject({ tid: IDS.tenant });
  });

  it("refuses TenantId=consumers: personal accounts have no agent identities", async () => {
    await expect(startTestSidecar(emu, baseEnv(emu, { AzureAd__TenantId: "consumers" }))).rejects.toThrow(
      /consumers/,
    );
  });
});
