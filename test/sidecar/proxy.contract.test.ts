import { type ChildProcess, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  baseEnv,
  call,
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
 * Outbound through a real forward proxy process (test/sidecar/support/connect-proxy.ts): token requests
 * to Entra tunnel through it with CONNECT (HTTPS_PROXY), plain-HTTP downstream calls go to it in
 * absolute form (HTTP_PROXY), and NO_PROXY keeps a host off it, as .NET's HttpClient does.
 */
let emu: Emu;
let downstream: Downstream;
let proxy: ChildProcess;
let proxyUrl: string;
const carried: string[] = [];
const started: TestSidecar[] = [];

beforeAll(async () => {
  emu = await startEmu();
  downstream = await startDownstream();
  proxy = spawn(process.execPath, [new URL("./support/connect-proxy.ts", import.meta.url).pathname], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  proxyUrl = await new Promise<string>((resolve, reject) => {
    proxy.on("exit", (code) => reject(new Error(`the proxy exited (${code})`)));
    proxy.stdout?.setEncoding("utf8").on("data", (text: string) => {
      for (const line of text.split("\n").filter((l) => l !== "")) {
        const port = /^listening (\d+)$/.exec(line)?.[1];
        if (port) resolve(`http://127.0.0.1:${port}`);
        else carried.push(line);
      }
    });
  });
});

afterAll(async () => {
  for (const s of started) await s.close();
  proxy?.kill("SIGTERM");
  await downstream?.close();
  await emu?.close();
});

async function sidecar(extra: Record<string, string>): Promise<TestSidecar> {
  const s = await startTestSidecar(
    emu,
    baseEnv(emu, {
      "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
      "DownstreamApis__graph-app__RequestAppToken": "true",
      DownstreamApis__weather__BaseUrl: `${downstream.url}/echo`,
      DownstreamApis__weather__Scopes__0: "api://contoso-weather/.default",
      DownstreamApis__weather__RequestAppToken: "true",
      ...extra,
    }),
  );
  started.push(s);
  return s;
}

const emulatorHost = () => new URL(emu.emulator.url).host;
const downstreamHost = () => new URL(downstream.url).host;

describe("HTTPS_PROXY / HTTP_PROXY / NO_PROXY", () => {
  it("tunnels Entra through the proxy with CONNECT and sends plain-HTTP downstream calls to it", async () => {
    carried.length = 0;
    const s = await sidecar({ HTTPS_PROXY: proxyUrl, HTTP_PROXY: proxyUrl });
    const token = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(clientOf(token)).toBe(IDS.blueprint);
    const down = await call(`${s.url}/DownstreamApiUnauthenticated/weather`, { method: "POST" });
    expect(down.json.statusCode, down.text).toBe(200);
    expect(carried).toContain(`CONNECT ${emulatorHost()}`);
    expect(
      carried.some(
        (l) => l.startsWith(`POST ${downstream.url}/echo`) || l.startsWith(`GET ${downstream.url}/echo`),
      ),
    ).toBe(true);
    // The proxy saw hosts, never a token: the Entra exchange was encrypted end to end inside the tunnel.
    expect(carried.join("\n")).not.toMatch(/eyJ/);
    expect(s.logs.join("")).toMatch(/outbound requests go through the configured proxy/);
  });

  it("keeps NO_PROXY hosts off the proxy (the lower-case variables win, as in .NET and curl)", async () => {
    carried.length = 0;
    const s = await sidecar({
      HTTPS_PROXY: "http://127.0.0.1:9", // nothing listens there: used, it would fail
      https_proxy: proxyUrl,
      HTTP_PROXY: proxyUrl,
      no_proxy: downstreamHost(),
    });
    const down = await call(`${s.url}/DownstreamApiUnauthenticated/weather`, { method: "POST" });
    expect(down.json.statusCode, down.text).toBe(200);
    expect(carried).toEqual([`CONNECT ${emulatorHost()}`]);
  });

  it("never logs the user and password of a proxy URL", async () => {
    const withCredentials = proxyUrl.replace("http://", "http://egress-user:pr0xy-s3cret@");
    const s = await sidecar({ HTTPS_PROXY: withCredentials });
    const token = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(token.status, token.text).toBe(200);
    const logs = s.logs.join("");
    expect(logs).toMatch(/outbound requests go through the configured proxy/);
    expect(logs).not.toMatch(/pr0xy-s3cret|egress-user/);
  });

  it("answers 500 naming Entra's host when the proxy cannot be reached", async () => {
    const s = await sidecar({ HTTPS_PROXY: "http://127.0.0.1:9" });
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(r.status).toBe(500);
    expect(String(r.json.detail)).toMatch(/Entra could not be reached/);
  });
});
