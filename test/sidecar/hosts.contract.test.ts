import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, type Emu, startEmu, startTestSidecar, type TestSidecar } from "./harness.ts";
import { fromOutside, netnsProblem, netnsSkipped, OUTSIDE } from "./support/netns.ts";

/**
 * Host filtering and the explicit opt-in for non-loopback callers, through a real sidecar. Raw
 * node:http requests, because fetch does not let a caller choose the Host header (a browser under DNS
 * rebinding does send the attacker's name).
 */
let emu: Emu;
const started: TestSidecar[] = [];
const API = {
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
};

function get(url: string, host?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: host ? { host } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  emu = await startEmu();
});
afterAll(async () => {
  for (const s of started) await s.close();
  await emu?.close();
});

async function sidecar(extra: Record<string, string>): Promise<TestSidecar> {
  const s = await startTestSidecar(emu, baseEnv(emu, { ...API, ...extra }));
  started.push(s);
  return s;
}

describe("Host header filtering", () => {
  it("answers localhost and loopback Hosts, refuses any other name with 400 (probes excepted)", async () => {
    const s = await sidecar({});
    const path = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app`;
    const port = new URL(s.url).port;
    expect((await get(path, `localhost:${port}`)).status).toBe(200);
    expect((await get(path, `127.0.0.1:${port}`)).status).toBe(200);
    const rebound = await get(path, `evil.example:${port}`);
    expect(rebound.status).toBe(400);
    expect(JSON.parse(rebound.body)).toMatchObject({
      status: 400,
      detail: expect.stringMatching(/AllowedHosts/),
    });
    expect(rebound.body).not.toMatch(/eyJ/);
    // Refused before the cache too: a URL already answered from memory is refused all the same.
    expect((await get(path, `evil.example:${port}`)).status).toBe(400);
    expect((await get(`${s.url}/healthz`, "10.1.2.3:5000")).body).toBe("Healthy");
  });

  it("accepts the names in AllowedHosts, and ignores '*' (Microsoft's template) with a warning", async () => {
    const s = await sidecar({ AllowedHosts: "*;sidecar;*.agents.example" });
    const path = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app`;
    expect((await get(path, "sidecar:5000")).status).toBe(200);
    expect((await get(path, "research.agents.example")).status).toBe(200);
    expect((await get(path, "evil.example")).status).toBe(400);
    expect(s.logs.join("")).toMatch(/AllowedHosts '\*' is ignored/);
  });
});

/**
 * Callers off loopback (test/sidecar/support/netns.ts): the sidecar runs in a user + network namespace
 * of the test's own whose loopback device also carries OUTSIDE, and the calls are made from inside it.
 * Entra is not reachable from there, so the requests name an unknown API: a 404 problem shows the request
 * passed the caller checks and reached the routes; the checks themselves answer 403 (not loopback) or
 * 400 (Host).
 */
const outside = (extra: Record<string, string>, calls: Parameters<typeof fromOutside>[1]) =>
  fromOutside(
    {
      AzureAd__Instance: "https://127.0.0.1:9/", // never reached
      AzureAd__TenantId: "415a225c-58fe-4f1a-b44d-e994a7645ffc",
      AzureAd__ClientId: "635df336-7566-4df6-891b-db8a571aea8e",
      AzureAd__ClientSecret: "not-used",
      ...extra,
    },
    calls,
  );

const skip = netnsProblem !== undefined;
const UNKNOWN = "/AuthorizationHeaderUnauthenticated/unknown-api";

describe("non-loopback callers (a separate-container setup), in a network namespace of the test's own", () => {
  it.skipIf(skip)(
    `are served only with Sidecar__AllowNonLoopbackCallers=true, and then only with an allowed Host${netnsSkipped}`,
    async () => {
      const { answers, output } = await outside(
        {
          Sidecar__AllowNonLoopbackCallers: "true",
          AllowedHosts: "sidecar",
          ASPNETCORE_ENVIRONMENT: "Development",
        },
        [
          { from: OUTSIDE, host: "sidecar:5000", path: UNKNOWN },
          { from: OUTSIDE, host: `${OUTSIDE}:5000`, path: UNKNOWN },
          { from: OUTSIDE, host: "evil.example", path: "/healthz" },
        ],
      );
      expect(answers[0]?.[0], output).toBe(404);
      expect(JSON.parse(answers[0]?.[1] ?? "{}")).toMatchObject({
        status: 404,
        detail: expect.stringMatching(/unknown-api/),
      });
      expect(answers[1]?.[0]).toBe(400);
      expect(answers[2]).toEqual([200, "Healthy"]);
      expect(output).toMatch(/AllowNonLoopbackCallers is true: any host that can reach/);
      expect(output).toMatch(/ASPNETCORE_ENVIRONMENT=Development has no effect here/);
    },
  );

  it.skipIf(skip)(
    `get 403 with ASPNETCORE_ENVIRONMENT=Development alone (unlike Microsoft's sidecar)${netnsSkipped}`,
    async () => {
      const { answers } = await outside({ ASPNETCORE_ENVIRONMENT: "Development", AllowedHosts: "sidecar" }, [
        { from: OUTSIDE, host: "sidecar:5000", path: UNKNOWN },
        { from: "127.0.0.1", host: "localhost:5000", path: UNKNOWN },
      ]);
      expect(answers[0]).toEqual([403, ""]);
      expect(answers[1]?.[0]).toBe(404);
    },
  );
});
