import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SIDECAR_TUNING } from "../../src/sidecar/tuning.ts";
import { baseEnv, call, claimsOf, type Emu, freePort, IDS, startEmu, tokenOf } from "./harness.ts";
import { fromOutside, netnsProblem, netnsSkipped, OUTSIDE, PORT } from "./support/netns.ts";

const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;

interface Child {
  process: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];

function run(args: string[], env: Record<string, string>, nodeArgs: string[] = []): Child {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const output: string[] = [];
  child.stdout?.on("data", (d: Buffer) => output.push(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { process: child, output, exited };
}

let emu: Emu;
let slowApi: { url: string; close(): void; received(): Promise<void> };
const secrets: string[] = [IDS.blueprintSecret];

beforeAll(async () => {
  emu = await startEmu();
  let arrived: () => void = () => {};
  let arrival = new Promise<void>((r) => {
    arrived = r;
  });
  const server = createServer((_req, res) => {
    arrived();
    setTimeout(() => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("done");
    }, 1500);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  slowApi = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => server.close(),
    // Resolves once a request has reached the API (then waits for the next one).
    received: async () => {
      await arrival;
      arrival = new Promise<void>((r) => {
        arrived = r;
      });
    },
  };
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  slowApi?.close();
  await emu?.close();
});

describe("start-up validation", () => {
  it("lists every configuration problem in one message and exits 1", async () => {
    const child = run(["sidecar"], {
      AzureAd__ClientId: "not-a-guid",
      AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFromVault",
      AzureAd__ClientCredentials__1__SourceType: "Sparkles",
      "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/User.Read",
      "DownstreamApis__graph-app__RequestAppToken": "true",
      Sidecar__AllowOverrides__CallDownstreamApi: "perhaps",
    });
    expect(await child.exited).toBe(1);
    const text = child.output.join("");
    expect(text).toMatch(/has 6 problems/);
    for (const expected of [
      /AzureAd:TenantId is missing/,
      /AzureAd:ClientId 'not-a-guid' is not a GUID/,
      /SourceType 'SignedAssertionFromVault' is not supported/,
      /SourceType 'Sparkles' is unknown/,
      /graph-app: RequestAppToken needs a scope ending in '\/.default'/,
      /Sidecar:AllowOverrides:CallDownstreamApi must be true or false/,
    ]) {
      expect(text).toMatch(expected);
    }
  });
});

describe("Node tuning", () => {
  const procText = (pid: number | undefined, file: string) =>
    readFileSync(`/proc/${pid}/${file}`, "utf8").split("\0");

  async function startMinimal(
    extra: Record<string, string>,
    args: string[] = [],
    nodeArgs: string[] = [],
  ): Promise<Child> {
    const port = await freePort();
    const env = baseEnv(emu, {
      Kestrel__Endpoints__Http__Url: `http://127.0.0.1:${port}`,
      AGENTID_SIDECAR_CA_FILE: emu.emulator.caPath,
      ...extra,
    });
    const child = run(["sidecar", ...args], env, nodeArgs);
    const probe = run(["sidecar", "--probe", "--probe-timeout", "30"], env);
    expect(await probe.exited, child.output.join("")).toBe(0);
    return child;
  }

  it("never re-executes itself; started without its tuning, it says what is missing", async () => {
    const child = await startMinimal({});
    try {
      // A re-executed process would carry the flags on its command line.
      const cmdline = procText(child.process.pid, "cmdline");
      for (const flag of SIDECAR_TUNING.flags) expect(cmdline).not.toContain(flag);
      const text = child.output.join("");
      expect(text).toMatch(
        /started without MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=16384 --optimize-for-size --no-maglev/,
      );
    } finally {
      child.process.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    }
  });

  it("started as the injected container is (flags on the command line, variables set), it does not warn", async () => {
    const child = await startMinimal({ ...SIDECAR_TUNING.env }, [], [...SIDECAR_TUNING.flags]);
    try {
      const cmdline = procText(child.process.pid, "cmdline");
      for (const flag of SIDECAR_TUNING.flags) expect(cmdline).toContain(flag);
      expect(child.output.join("")).not.toMatch(/started without/);
    } finally {
      child.process.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    }
  });
});

describe("Microsoft's sample configuration, as a real process", () => {
  it("starts unchanged, serves agent tokens, never logs a token, and drains on SIGTERM", async () => {
    const port = await freePort();
    // vj926/entra-agentid-samples sidecar/dev/docker-compose.yml, pointed at the emulator.
    const env: Record<string, string> = {
      AzureAd__Instance: `${emu.emulator.url}/`,
      AzureAd__TenantId: IDS.tenant,
      AzureAd__ClientId: IDS.blueprint,
      AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
      AzureAd__ClientCredentials__0__ClientSecret: IDS.blueprintSecret,
      "DownstreamApis__graph-app__BaseUrl": "https://graph.microsoft.com/v1.0/",
      "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
      "DownstreamApis__graph-app__RequestAppToken": "true",
      DownstreamApis__graph__BaseUrl: "https://graph.microsoft.com/v1.0/",
      DownstreamApis__graph__Scopes__0: "https://graph.microsoft.com/.default",
      ASPNETCORE_ENVIRONMENT: "Production",
      ASPNETCORE_URLS: `http://+:${port}`,
      AllowedHosts: "*",
      Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
      // Not Microsoft's: our own additions for this test (trust the emulator; a slow API for the drain).
      AGENTID_SIDECAR_CA_FILE: emu.emulator.caPath,
      AGENTID_SIDECAR_LOG_LEVEL: "debug",
      DownstreamApis__slow__BaseUrl: slowApi.url,
      DownstreamApis__slow__Scopes__0: "https://graph.microsoft.com/.default",
      DownstreamApis__slow__RequestAppToken: "true",
      Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated: "true",
    };
    const sidecar = run(["sidecar"], env);
    try {
      const probe = run(["sidecar", "--probe", "--probe-timeout", "40"], {
        ASPNETCORE_URLS: `http://+:${port}`,
      });
      expect(await probe.exited, sidecar.output.join("")).toBe(0);
      const base = `http://127.0.0.1:${port}`;

      const agent = await call(
        `${base}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
      );
      expect(agent.status, agent.text).toBe(200);
      expect(claimsOf(agent)).toMatchObject({
        appid: IDS.agent,
        xms_par_app_azp: IDS.blueprint,
        aud: "https://graph.microsoft.com",
      });
      secrets.push(tokenOf(agent));
      const user = await emu.userToken();
      secrets.push(user);
      const viaUser = await call(`${base}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`, {
        headers: { authorization: `Bearer ${user}` },
      });
      expect(viaUser.status, viaUser.text).toBe(200);
      secrets.push(tokenOf(viaUser));
      const agentUser = await call(
        `${base}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&AgentUsername=${IDS.agentUserUpn}`,
      );
      secrets.push(tokenOf(agentUser));
      const validated = await call(`${base}/Validate`, { headers: { authorization: `Bearer ${user}` } });
      expect(validated.status).toBe(200);
      // Failures are logged too: an agent of another blueprint, a garbage bearer.
      expect(
        (await call(`${base}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.otherAgent}`))
          .status,
      ).toBe(401);
      expect(
        (await call(`${base}/AuthorizationHeader/graph`, { headers: { authorization: `Bearer ${user}x` } }))
          .status,
      ).toBe(401);

      // SIGTERM while a request is in flight: it completes, then the process exits 0.
      const inFlight = call(`${base}/DownstreamApiUnauthenticated/slow`, { method: "POST" });
      await slowApi.received();
      sidecar.process.kill("SIGTERM");
      const finished = await inFlight;
      expect(finished.status).toBe(200);
      expect(finished.json).toMatchObject({ statusCode: 200, content: "done" });
      expect(await sidecar.exited).toBe(0);
      await expect(call(`${base}/healthz`)).rejects.toThrow();
    } finally {
      sidecar.process.kill("SIGKILL");
    }
    const logs = sidecar.output.join("");
    expect(logs).toMatch(/sidecar ready/);
    // How long the sidecar took from its process start to ready (a pod's start depends on it).
    expect(logs).toMatch(/"readyAfterMs":\d+/);
    expect(logs).toMatch(/draining in-flight requests/);
    for (const secret of secrets.filter((s) => s.length > 0)) {
      expect(logs.includes(secret), "a token or secret reached the logs").toBe(false);
      // Nor any of its three parts (a JWT's signature alone is enough to replay nothing, but its payload is personal data).
      for (const part of secret.split(".")) if (part.length > 20) expect(logs.includes(part)).toBe(false);
    }
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
  });
});

describe("callers off loopback, in a network namespace of the test's own", () => {
  it.skipIf(netnsProblem !== undefined)(
    `get 403 on every route but /healthz, with the sidecar listening on every interface${netnsSkipped}`,
    async () => {
      const env: Record<string, string> = {
        // Entra is never reached: 403 is decided before any token is looked at.
        AzureAd__Instance: "https://127.0.0.1:9/",
        AzureAd__TenantId: IDS.tenant,
        AzureAd__ClientId: IDS.blueprint,
        AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
        AzureAd__ClientCredentials__0__ClientSecret: IDS.blueprintSecret,
        "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
        "DownstreamApis__graph-app__RequestAppToken": "true",
        Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
      };
      // Each call names its source address, so the sidecar sees exactly that caller.
      const { answers, output } = await fromOutside(env, [
        { from: OUTSIDE, host: `${OUTSIDE}:${PORT}`, path: "/AuthorizationHeaderUnauthenticated/graph-app" },
        { from: OUTSIDE, host: `${OUTSIDE}:${PORT}`, path: "/Validate" },
        { from: OUTSIDE, host: `${OUTSIDE}:${PORT}`, path: "/healthz" },
        { from: "127.0.0.1", host: `127.0.0.1:${PORT}`, path: "/healthz" },
      ]);
      const [token, validate, health, loopbackHealth] = answers;
      expect({ token, validate, health, loopbackHealth }, output).toEqual({
        token: [403, ""],
        validate: [403, ""],
        health: [200, "Healthy"],
        loopbackHealth: [200, "Healthy"],
      });
    },
  );
});
