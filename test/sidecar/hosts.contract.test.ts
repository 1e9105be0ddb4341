import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, type Emu, startEmu, startTestSidecar, type TestSidecar } from "./harness.ts";

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

/** The machine's own non-loopback IPv4 address (traffic to it stays in this kernel). */
function ownAddress(): string {
  const a = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  if (!a) throw new Error("this test needs a non-loopback IPv4 interface to call the sidecar from");
  return a;
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

describe("non-loopback callers (a separate-container setup)", () => {
  it("are refused with 403 unless Sidecar__AllowNonLoopbackCallers=true, and even then need an allowed Host", async () => {
    const address = ownAddress();
    const closed = await sidecar({ Kestrel__Endpoints__Http__Url: "http://0.0.0.0:0" });
    const closedPort = new URL(closed.url).port;
    const refused = await get(
      `http://${address}:${closedPort}/AuthorizationHeaderUnauthenticated/graph-app`,
      "sidecar",
    );
    expect([refused.status, refused.body]).toEqual([403, ""]);

    const open = await sidecar({
      Kestrel__Endpoints__Http__Url: "http://0.0.0.0:0",
      Sidecar__AllowNonLoopbackCallers: "true",
      AllowedHosts: "sidecar",
      ASPNETCORE_ENVIRONMENT: "Development",
    });
    const port = new URL(open.url).port;
    const url = `http://${address}:${port}/AuthorizationHeaderUnauthenticated/graph-app`;
    expect((await get(url, `sidecar:${port}`)).status).toBe(200);
    expect((await get(url, `${address}:${port}`)).status).toBe(400);
    const logs = open.logs.join("");
    expect(logs).toMatch(/AllowNonLoopbackCallers is true: any host that can reach/);
    expect(logs).toMatch(/ASPNETCORE_ENVIRONMENT=Development has no effect here/);
  });

  it("ASPNETCORE_ENVIRONMENT=Development alone does not open the sidecar (unlike Microsoft's)", async () => {
    const s = await sidecar({
      Kestrel__Endpoints__Http__Url: "http://0.0.0.0:0",
      ASPNETCORE_ENVIRONMENT: "Development",
    });
    const r = await get(
      `http://${ownAddress()}:${new URL(s.url).port}/AuthorizationHeaderUnauthenticated/graph-app`,
    );
    expect(r.status).toBe(403);
  });
});
