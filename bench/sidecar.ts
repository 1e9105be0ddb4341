import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { startEmulator } from "../src/emulator/index.ts";
import { IDS, testDirectory } from "../src/emulator/testing.ts";
import { createLogger } from "../src/lib/log.ts";

/**
 * bench/sidecar: the cached hot path, `GET /AuthorizationHeaderUnauthenticated/{api}?AgentIdentity=…`,
 * against a bare fastify route answering a JSON body of the same size, both as separate processes on
 * the same Node, driven by autocannon in the same run with the same connections. Prints requests/s
 * of both and their ratio, p50/p99 latency, the sidecar's RSS idle and under load, and its time from
 * process start to ready. Targets (issue 4): ratio ≥ 0.85, p99 ≤ 5 ms at 50 connections, RSS ≤ 80 MB
 * under load, ready ≤ 500 ms. Figures are printed, never asserted.
 *
 * Baseline and sidecar runs alternate for several rounds, so that load from other processes on the
 * machine hits both alike; the medians are printed.
 *
 *   npm run bench:sidecar [-- --connections 50 --duration 5 --rounds 3]
 */

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const CONNECTIONS = flag("connections", 50);
const DURATION = flag("duration", 5);
const ROUNDS = flag("rounds", 3);
const log = (line: string) => process.stdout.write(`[bench:sidecar] ${line}\n`);
const CLI = new URL("../src/cli.ts", import.meta.url).pathname;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return kb ? Number(kb) / 1024 : Number.NaN;
}

async function waitReady(url: string, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not yet listening
    }
    if (Date.now() > end) throw new Error(`${url} not ready after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  child.on("exit", (code, signal) => {
    if (code !== 0 && signal === null) log(`child exited with ${code}`);
  });
  return child;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, seconds: number, onTick?: () => void): Promise<Run> {
  const timer = onTick ? setInterval(onTick, 250) : undefined;
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds, pipelining: 1 });
  if (timer) clearInterval(timer);
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

const emulator = await startEmulator({
  port: 0,
  directory: testDirectory(),
  logger: createLogger({ name: "emulator", level: "silent" }),
});
const sidecarPort = await freePort();
const baselinePort = await freePort();
const sidecarEnv = {
  AzureAd__Instance: `${emulator.url}/`,
  AzureAd__TenantId: IDS.tenant,
  AzureAd__ClientId: IDS.blueprint,
  AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
  AzureAd__ClientCredentials__0__ClientSecret: IDS.blueprintSecret,
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
  Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
  Kestrel__Endpoints__Http__Url: `http://127.0.0.1:${sidecarPort}`,
  AGENTID_SIDECAR_CA_FILE: emulator.caPath,
  AGENTID_SIDECAR_LOG_LEVEL: "warn",
  // A fresh compile cache: the first start is a cold one, as in a new pod; the second reuses it.
  NODE_COMPILE_CACHE: mkdtempSync(join(tmpdir(), "agentid-bench-cc-")),
};
async function startTimed(): Promise<{ child: ChildProcess; readyMs: number }> {
  const started = performance.now();
  const child = spawnNode([CLI, "sidecar"], sidecarEnv);
  await waitReady(`http://127.0.0.1:${sidecarPort}/readyz`);
  return { child, readyMs: performance.now() - started };
}
const cold = await startTimed();
cold.child.kill("SIGTERM");
await new Promise((r) => cold.child.once("exit", r));
const { child: sidecar, readyMs: warmReadyMs } = await startTimed();
const readyMs = cold.readyMs;
let baseline: ChildProcess | undefined;
try {
  const tokenUrl = `http://127.0.0.1:${sidecarPort}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`;
  const warm = await fetch(tokenUrl);
  const body = await warm.text();
  if (warm.status !== 200) throw new Error(`sidecar answered ${warm.status}: ${body}`);
  log(`answer body ${body.length} bytes`);

  // The baseline: a bare fastify route answering a same-size JSON body, its own process like the sidecar.
  const filler = "x".repeat(body.length - '{"authorizationHeader":"Bearer "}'.length);
  const baselineCode = `
    import Fastify from "fastify";
    const app = Fastify({ logger: false });
    const body = JSON.stringify({ authorizationHeader: "Bearer " + ${JSON.stringify(filler)} });
    app.get("/AuthorizationHeaderUnauthenticated/:apiName", (req, reply) => reply.type("application/json; charset=utf-8").send(body));
    app.get("/readyz", () => "ok");
    await app.listen({ host: "127.0.0.1", port: ${baselinePort} });`;
  baseline = spawnNode(["--input-type=module", "-e", baselineCode], {});
  await waitReady(`http://127.0.0.1:${baselinePort}/readyz`);
  const baselineUrl = `http://127.0.0.1:${baselinePort}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`;

  await new Promise((r) => setTimeout(r, 1000));
  const idleRss = rssMb(sidecar.pid);
  log(`warming up both (${Math.min(3, DURATION)} s each, ${CONNECTIONS} connections)`);
  await load(baselineUrl, Math.min(3, DURATION));
  await load(tokenUrl, Math.min(3, DURATION));
  const bares: Run[] = [];
  const sides: Run[] = [];
  let peakRss = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    log(`round ${round}/${ROUNDS}: baseline ${DURATION} s, then sidecar ${DURATION} s`);
    bares.push(await load(baselineUrl, DURATION));
    sides.push(
      await load(tokenUrl, DURATION, () => {
        peakRss = Math.max(peakRss, rssMb(sidecar.pid));
      }),
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const summary = (runs: Run[]): Run => ({
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
  });
  const bare = summary(bares);
  const side = summary(sides);
  const row = (name: string, r: Run) =>
    `${name.padEnd(28)} ${r.rps.toFixed(0).padStart(8)} req/s   p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   errors ${r.errors} non-2xx ${r.non2xx}`;
  log("");
  log(`medians of ${ROUNDS} rounds, ${CONNECTIONS} connections:`);
  log(row("bare fastify (same body)", bare));
  log(row("sidecar (cached token)", side));
  log(
    `ratio sidecar/bare: ${(side.rps / bare.rps).toFixed(2)} (per round: ${sides.map((r, i) => (r.rps / (bares[i]?.rps ?? 1)).toFixed(2)).join(", ")})   (target ≥ 0.85)`,
  );
  log(`sidecar p99: ${side.p99.toFixed(2)} ms   (target ≤ 5 ms)`);
  log(
    `sidecar RSS: idle ${idleRss.toFixed(1)} MB, under load (peak) ${peakRss.toFixed(1)} MB   (target ≤ 80 MB)`,
  );
  log(
    `sidecar ready after process start: ${readyMs.toFixed(0)} ms cold, ${warmReadyMs.toFixed(0)} ms with a warm compile cache   (target ≤ 500 ms)`,
  );
} finally {
  sidecar.kill("SIGTERM");
  baseline?.kill("SIGTERM");
  await emulator.close();
}
