import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, call, type Emu, freePort, IDS, startEmu } from "./harness.ts";

/**
 * The sidecar's memory budget rules out undici (npm) and Node's global fetch/Headers/Response (Node's
 * internal undici): docs/dependencies.md. This runs the real sidecar process with a preload that
 * records every module loaded, drives every outbound path (Entra token requests, OpenID configuration
 * and JWKS for an inbound token, a downstream API with a redirect), and checks the record.
 */

const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;
const RECORDER = new URL("./support/module-recorder.ts", import.meta.url).pathname;

interface ModuleLog {
  urls: string[];
  internals: string[];
}

/** What in a module log is undici: the npm package's files, or Node's internal copy (pure). */
function undiciIn(log: ModuleLog): string[] {
  return [
    ...log.urls.filter((u) => /[\\/]undici[\\/]/.test(u)),
    ...log.internals.filter((m) => m.includes("undici")),
  ];
}

function runRecorded(
  args: string[],
  env: Record<string, string>,
  logFile: string,
): { exited: Promise<number | null>; output: string[]; kill(signal: NodeJS.Signals): void } {
  const child = spawn(process.execPath, ["--import", RECORDER, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env, AGENTID_TEST_MODULE_LOG: logFile },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stdout?.on("data", (d: Buffer) => output.push(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  afterAll(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return { exited, output, kill: (signal) => child.kill(signal) };
}

function readLog(file: string): ModuleLog {
  return JSON.parse(readFileSync(file, "utf8")) as ModuleLog;
}

let emu: Emu;
let api: Server;
let apiUrl: string;
const seen: string[] = [];
const dir = mkdtempSync(join(tmpdir(), "agentid-no-undici-"));

beforeAll(async () => {
  emu = await startEmu();
  api = createServer((req, res) => {
    seen.push(req.url ?? "");
    if (req.url === "/start") {
      res.writeHead(307, { location: "/end" });
      res.end();
      return;
    }
    req.resume();
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("arrived");
  });
  await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

afterAll(async () => {
  api?.closeAllConnections();
  api?.close();
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the module recorder", () => {
  it("sees undici from npm and Node's internal undici behind the fetch/Headers globals", async () => {
    const npm = join(dir, "npm.json");
    const script = "await import('undici');";
    const a = runRecorded(["--input-type=module", "-e", script], {}, npm);
    expect(await a.exited, a.output.join("")).toBe(0);
    expect(readLog(npm).urls.some((u) => /[\\/]undici[\\/]/.test(u))).toBe(true);

    const globals = join(dir, "globals.json");
    const b = runRecorded(["-e", "new Headers({ a: '1' })"], {}, globals);
    expect(await b.exited, b.output.join("")).toBe(0);
    expect(readLog(globals).internals).toContain("NativeModule internal/deps/undici/undici");

    // The trap the sidecar avoids with process.getBuiltinModule: node:http as an ES module reads its
    // lazy WebSocket exports, which are Node's internal undici.
    const esmHttp = join(dir, "esm-http.json");
    const c = runRecorded(["--input-type=module", "-e", "import 'node:http';"], {}, esmHttp);
    expect(await c.exited, c.output.join("")).toBe(0);
    expect(undiciIn(readLog(esmHttp))).not.toEqual([]);
  });
});

describe("the sidecar process", () => {
  it("serves tokens, validates an inbound token and calls a downstream API without loading undici", async () => {
    const port = await freePort();
    const logFile = join(dir, "sidecar.json");
    const sidecar = runRecorded(
      [CLI, "sidecar"],
      baseEnv(emu, {
        Kestrel__Endpoints__Http__Url: `http://127.0.0.1:${port}`,
        AGENTID_SIDECAR_CA_FILE: emu.emulator.caPath,
        AGENTID_SIDECAR_METRICS_PORT: String(await freePort()),
        AGENTID_SIDECAR_METRICS_HOST: "127.0.0.1",
        Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated: "true",
        Sidecar__AllowOutboundRedirects: "true",
        DownstreamApis__hop__BaseUrl: `${apiUrl}/`,
        DownstreamApis__hop__RelativePath: "start",
        DownstreamApis__hop__Scopes__0: "api://contoso-weather/.default",
        DownstreamApis__hop__RequestAppToken: "true",
        "DownstreamApis__weather-user__BaseUrl": `${apiUrl}/`,
        "DownstreamApis__weather-user__RelativePath": "user",
        "DownstreamApis__weather-user__Scopes__0": "api://contoso-weather/Forecast.Read",
      }),
      logFile,
    );
    const base = `http://127.0.0.1:${port}`;
    try {
      // The postStart probe, itself a process that must not load undici either.
      const probeLog = join(dir, "probe.json");
      const probe = runRecorded(
        [CLI, "sidecar", "--probe", "--probe-timeout", "40"],
        { Kestrel__Endpoints__Http__Url: `http://127.0.0.1:${port}` },
        probeLog,
      );
      expect(await probe.exited, `${probe.output.join("")}${sidecar.output.join("")}`).toBe(0);
      expect(undiciIn(readLog(probeLog))).toEqual([]);
      // App token (client credentials) and agent token (two legs), then a downstream call with a redirect.
      const app = await call(`${base}/DownstreamApiUnauthenticated/hop`, { method: "POST" });
      expect(app.json, app.text).toMatchObject({ statusCode: 200, content: "arrived" });
      const agent = await call(`${base}/DownstreamApiUnauthenticated/hop?AgentIdentity=${IDS.agent}`, {
        method: "POST",
      });
      expect(agent.json, agent.text).toMatchObject({ statusCode: 200 });
      // An inbound token: OpenID configuration, JWKS, then OBO.
      const user = await emu.userToken();
      const obo = await call(`${base}/DownstreamApi/weather-user`, {
        method: "POST",
        headers: { authorization: `Bearer ${user}` },
      });
      expect(obo.json, obo.text).toMatchObject({ statusCode: 200, content: "arrived" });
      expect(seen).toEqual(expect.arrayContaining(["/start", "/end", "/user"]));
      // The header route, and a problem answer through a route's response schema.
      const header = await call(`${base}/AuthorizationHeaderUnauthenticated/hop`);
      expect(header.json, header.text).toMatchObject({
        authorizationHeader: expect.stringMatching(/^Bearer /),
      });
      const unknown = await call(`${base}/AuthorizationHeaderUnauthenticated/nope`);
      expect(unknown.status, unknown.text).toBe(404);
      // After the warm-up that loads msal-node in the background.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      sidecar.kill("SIGTERM");
    }
    expect(await sidecar.exited, sidecar.output.join("")).toBe(0);
    const log = readLog(logFile);
    // The record is real: the sidecar's own modules and msal-node are in it.
    expect(log.urls.some((u) => u.endsWith("/src/sidecar/outbound.ts"))).toBe(true);
    expect(log.urls.some((u) => u.includes("/@azure/msal-node/"))).toBe(true);
    expect(log.urls.some((u) => u.includes("/jose/"))).toBe(true);
    expect(undiciIn(log)).toEqual([]);
    // The routes declare no schemas and fastify is given compilers that refuse to compile: neither Ajv
    // nor fast-json-stringify's compiler is loaded (fastify's own error serialiser requires only
    // fast-json-stringify's small runtime helpers, lib/serializer.js).
    const compilers =
      /\/node_modules\/(ajv\/|fast-json-stringify\/index\.js|@fastify\/ajv-compiler\/|@fastify\/fast-json-stringify-compiler\/)/;
    expect(log.urls.filter((u) => compilers.test(u))).toEqual([]);
    expect(log.urls.some((u) => u.includes("/node_modules/fastify/"))).toBe(true);
  });
});
