import { execFile, spawn, spawnSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { request } from "node:http";
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
 * Callers off loopback: the sidecar runs in a user + network namespace of the test's own (unshare -rn)
 * whose loopback device also carries 198.51.100.1, a documentation address, and the calls are made
 * from inside it (nsenter), as test/sidecar/process.contract.test.ts does. Entra is not reachable from
 * there, so the requests name an unknown API: a 404 problem shows the request passed the caller checks
 * and reached the routes; the checks themselves answer 403 (not loopback) or 400 (Host).
 */
const OUTSIDE = "198.51.100.1";
const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;
const netnsProblem = (() => {
  const tried = spawnSync("unshare", ["-rn", "ip", "addr", "add", `${OUTSIDE}/32`, "dev", "lo"], {
    encoding: "utf8",
  });
  if (tried.error) return `unshare or ip is not installed (${tried.error.message})`;
  return tried.status === 0 ? undefined : `unshare -rn ... ip addr add failed: ${tried.stderr.trim()}`;
})();

/** Starts a sidecar in a namespace of its own, makes the calls from inside it, answers [status, body] each. */
async function fromOutside(
  extra: Record<string, string>,
  calls: { from: string; host: string; path: string }[],
): Promise<{ answers: [number, string][]; output: string }> {
  const port = 5000; // a fresh namespace: nothing else listens there
  const env: Record<string, string> = {
    AzureAd__Instance: "https://127.0.0.1:9/", // never reached
    AzureAd__TenantId: "415a225c-58fe-4f1a-b44d-e994a7645ffc",
    AzureAd__ClientId: "635df336-7566-4df6-891b-db8a571aea8e",
    AzureAd__ClientSecret: "not-used",
    ASPNETCORE_URLS: `http://+:${port}`,
    ...extra,
  };
  const child = spawn(
    "unshare",
    [
      "-rn",
      "sh",
      "-c",
      `ip link set lo up && ip addr add ${OUTSIDE}/32 dev lo && exec "$@"`,
      "sh",
      process.execPath,
      CLI,
      "sidecar",
    ],
    { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const output: string[] = [];
  child.stdout?.on("data", (d: Buffer) => output.push(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output.push(d.toString()));
  const exited = new Promise((r) => child.on("exit", r));
  const script = `
    const http = require("node:http");
    const get = (from, host, path) => new Promise((resolve, reject) => {
      const req = http.get({ host: from, localAddress: from, port: ${port}, path, headers: { host } }, (res) => {
        let body = ""; res.on("data", (d) => (body += d));
        res.on("end", () => resolve([res.statusCode, body]));
      });
      req.on("error", reject);
    });
    (async () => {
      for (let i = 0; ; i++) {
        try { await get("127.0.0.1", "localhost", "/healthz"); break; }
        catch (e) { if (i > 400) throw e; await new Promise((r) => setTimeout(r, 50)); }
      }
      const out = [];
      for (const c of ${JSON.stringify(calls)}) out.push(await get(c.from, c.host, c.path));
      console.log(JSON.stringify(out));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  try {
    // nsenter must join the sidecar's own namespace, not ours: wait until unshare has made it (before
    // that, the child's namespace is this one, where something else may listen on the port).
    const own = readlinkSync("/proc/self/ns/net");
    for (let i = 0; readlinkSync(`/proc/${child.pid}/ns/net`) === own; i++) {
      if (i > 500)
        throw new Error(`the sidecar did not enter a network namespace of its own\n${output.join("")}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        "nsenter",
        ["--preserve-credentials", "-U", "-n", "-t", String(child.pid), process.execPath, "-e", script],
        { timeout: 30_000 },
        (error, out, err) =>
          error ? reject(new Error(`${error.message}\n${err}\n${output.join("")}`)) : resolve(out),
      ),
    );
    return { answers: JSON.parse(stdout) as [number, string][], output: output.join("") };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

const skip = netnsProblem !== undefined;
const why = netnsProblem ? ` (skipped: ${netnsProblem}; unprivileged user namespaces are needed)` : "";
const UNKNOWN = "/AuthorizationHeaderUnauthenticated/unknown-api";

describe("non-loopback callers (a separate-container setup), in a network namespace of the test's own", () => {
  it.skipIf(skip)(
    `are served only with Sidecar__AllowNonLoopbackCallers=true, and then only with an allowed Host${why}`,
    async () => {
      const { answers, output } = await fromOutside(
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
    `get 403 with ASPNETCORE_ENVIRONMENT=Development alone (unlike Microsoft's sidecar)${why}`,
    async () => {
      const { answers } = await fromOutside(
        { ASPNETCORE_ENVIRONMENT: "Development", AllowedHosts: "sidecar" },
        [
          { from: OUTSIDE, host: "sidecar:5000", path: UNKNOWN },
          { from: "127.0.0.1", host: "localhost:5000", path: UNKNOWN },
        ],
      );
      expect(answers[0]).toEqual([403, ""]);
      expect(answers[1]?.[0]).toBe(404);
    },
  );
});
