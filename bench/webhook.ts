import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate } from "../src/lib/pki.ts";
import { MANAGER_TUNING } from "../src/manager/v8-flags.ts";
import { checkBenchArgs, numberFlag, numberListFlag } from "./args.ts";
import {
  type ClosedLoopSummary,
  closedLoopRecord,
  pairedDifferences,
  summarizeClosedLoop,
} from "./closed-loop.ts";
import {
  compareAtLoad,
  fixedRateRecord,
  loadFigures,
  median,
  type PhaseSummary,
  summarizePhase,
} from "./fixed-rate.ts";
import { buildLoadGenerator, cpuPlan, LoadGenerator, pinnedCommand, tasksetWorks } from "./loadgen.ts";
import { typicalReview } from "./webhook-review.ts";

/**
 * bench/webhook: AdmissionReviews of a typical three-container pod (an app, a worker and the user's own
 * native log shipper) over HTTPS against the webhook's admission server, and the same body against a
 * bare fastify HTTPS route that echoes it, in the same run, each server in a process of its own
 * (bench/webhook-server.ts). Two measurements, each in rounds that alternate the order (ABBA) so drifting
 * load favours neither, medians of rounds:
 *
 * 1. Saturation (bench/closed-loop.ts, closed loop: each of the 50 connections sends its next request as
 *    soon as the answer arrives; latencies in µs, where autocannon's are whole ms): each server's
 *    throughput, the ratio (issue 11: ≥ 0.7), and the p99 of each (issue 11: the webhook's no worse than
 *    the echo's + 1 ms "at 50 connections", the issue's own wording of this measurement); with the
 *    round-by-round differences of the p99s.
 * 2. Fixed offered loads (bench/fixed-rate.ts, open loop, wrk2-style: evenly spaced intended send times,
 *    latency from the intended time, at most 50 in flight): fractions (`--loads`) of the echo route's
 *    saturated throughput from step 1, the same for both servers. Here the p99 says what a review adds to
 *    an admission's latency under a load the API server could send; the same slack is applied at 0.5 × the
 *    echo's throughput, so that the target is read both ways (docs/benchmarks.md).
 *
 * The load comes from bench/loadgen (Go; built on first use): a generator in this Node process stalled in
 * its own GC for 10 to 16 ms at a time and charged that to the server it measured. Where the machine has
 * two CPUs or more and `taskset`, the server under test runs on the last CPU and the generator on the
 * others (`--no-pin` shares them all), so neither preempts the other in the middle of a request.
 *
 * Each server's main-thread CPU time per request is printed for step 1 too: it moves far less with the
 * machine's load than requests per second. Figures are printed, never asserted.
 *
 *   npm run bench:webhook [-- --connections 50 --duration 8 --rounds 4 --loads 0.25,0.5,0.75 --no-pin]
 */

const USAGE = `npm run bench:webhook [-- --connections 50 --duration 8 --rounds 4 --loads 0.25,0.5,0.75 --no-pin]
  --connections  connections of the load generator (the closed loop's requests in flight at saturation, and the fixed loads' bound)
  --duration     seconds of each measured phase (long enough to hold the servers' full GCs, about one every 4 s at saturation)
  --rounds       rounds of each measurement (ABBA order; medians are printed)
  --loads        fixed offered loads, as fractions (each above 0, at most 2, given once) of the echo route's saturated throughput
  --no-pin       run the servers and the load generator on every CPU (by default, with 2+ CPUs and taskset, the server under test gets the last CPU and the generator the others)
Needs Go (>= 1.24) on the PATH: the load generator (bench/loadgen) is built on first use into ~/.cache/agentid/bench.`;
checkBenchArgs({
  usage: USAGE,
  values: ["connections", "duration", "rounds", "loads"],
  switches: ["no-pin"],
});

/** The fixed load at which issue 11's p99 target is read too, besides saturation (docs/benchmarks.md). */
const TARGET_LOAD = 0.5;

function options() {
  try {
    return {
      connections: numberFlag("connections", 50),
      // Long enough that every phase holds a full GC of the server (one every 4 s or so at saturation for
      // either server, docs/benchmarks.md): with 3 s phases some had one and some none, and that alone
      // moved a phase's p99 by several ms.
      duration: numberFlag("duration", 8),
      rounds: numberFlag("rounds", 4),
      loads: numberListFlag("loads", [0.25, TARGET_LOAD, 0.75], 2),
    };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}
const { connections: CONNECTIONS, duration: DURATION, rounds: ROUNDS, loads: LOADS } = options();
const log = (line: string) => process.stdout.write(`[bench:webhook] ${line}\n`);

async function startServer(
  kind: "webhook" | "echo",
  cert: string,
  key: string,
  cpus: string | undefined,
): Promise<{ child: ChildProcess; port: number }> {
  // The webhook runs in the manager's process, so both servers start with the manager's Node flags.
  const script = new URL("./webhook-server.ts", import.meta.url).pathname;
  const { command, args } = pinnedCommand(process.execPath, [...MANAGER_TUNING.flags, script, kind], cpus);
  const child = spawn(command, args, {
    env: { ...process.env, BENCH_CERT: cert, BENCH_KEY: key },
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once("exit", (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  return { child, port };
}

function post(port: number, body: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/mutate-v1-pod",
        method: "POST",
        ca: caPem,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => resolve(text));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

interface Result {
  summary: ClosedLoopSummary;
  /** The server's main-thread CPU time per request (µs). */
  cpu: number;
  /** The load generator's CPU time per request (µs). */
  generatorCpu: number;
  /** The server's GC pauses during the phase. */
  gc: GcPauses;
}

/** GC pauses of a server process (its PerformanceObserver of "gc" entries): totals, and the longest since the last question. */
interface GcPauses {
  pauses: number;
  totalMs: number;
  full: number;
  longestMs: number;
}

interface ServerState {
  cpuMicros: number;
  gc: GcPauses;
}

function serverState(child: ChildProcess): Promise<ServerState> {
  return new Promise((resolve) => {
    child.once("message", (m: ServerState) => resolve(m));
    child.send("state");
  });
}

/** Runs a phase and gives what the server spent on it: main-thread CPU and GC pauses. */
async function measured<T>(
  server: { child: ChildProcess },
  phase: () => Promise<T>,
): Promise<{ result: T; cpuMicros: number; gc: GcPauses }> {
  const before = await serverState(server.child);
  const result = await phase();
  const after = await serverState(server.child);
  return {
    result,
    cpuMicros: after.cpuMicros - before.cpuMicros,
    gc: {
      pauses: after.gc.pauses - before.gc.pauses,
      totalMs: after.gc.totalMs - before.gc.totalMs,
      full: after.gc.full - before.gc.full,
      longestMs: after.gc.longestMs,
    },
  };
}

const gcLine = (gc: GcPauses) =>
  `GC ${gc.totalMs.toFixed(0)} ms in ${gc.pauses} pauses (${gc.full} full), longest ${gc.longestMs.toFixed(1)} ms`;

/** One closed-loop phase against one server, with both processes' CPU time per request and the server's GC. */
async function drive(
  server: { child: ChildProcess; port: number },
  client: LoadClient,
  seconds: number,
): Promise<Result> {
  const { result, cpuMicros, gc } = await measured(server, () => client.saturate(seconds));
  const { summary, generatorCpu } = result;
  return { summary, cpu: cpuMicros / Math.max(1, summary.requests), generatorCpu, gc };
}

const SLACK_MS = 1;
const f1 = (ms: number) => ms.toFixed(1);
const f2 = (ms: number) => ms.toFixed(2);
const signed = (ms: number) => `${ms > 0 ? "+" : ""}${f2(ms)}`;

/** One server's side of the load generator, for both measurements (its connections stay open between phases). */
class LoadClient {
  private readonly generator: LoadGenerator;
  private readonly url: string;

  constructor(generator: LoadGenerator, url: string) {
    this.generator = generator;
    this.url = url;
  }

  /** Opens every connection at once, so that no TLS handshake lands in a measured phase. */
  async openConnections(): Promise<void> {
    const { statuses, connections } = await this.generator.open(this.url);
    if (statuses.some((status) => status !== 200)) throw new Error(`warm-up answered ${statuses.join(",")}`);
    if (connections !== CONNECTIONS)
      throw new Error(
        `the load generator opened ${connections} of ${CONNECTIONS} connections to ${this.url}`,
      );
  }

  /** One fixed-load phase, with the generator's CPU time per request (µs). */
  async phase(rate: number, seconds: number): Promise<{ summary: PhaseSummary; generatorCpu: number }> {
    const durationMs = seconds * 1000;
    const samples = await this.generator.fixed(this.url, rate, durationMs, Math.max(5000, durationMs));
    const record = fixedRateRecord(samples, rate, durationMs);
    return { summary: summarizePhase(record), generatorCpu: samples.cpuMicros / record.planned };
  }

  /** A closed loop of CONNECTIONS requests in flight, with the generator's CPU time per request (µs). */
  async saturate(seconds: number): Promise<{ summary: ClosedLoopSummary; generatorCpu: number }> {
    const durationMs = seconds * 1000;
    const samples = await this.generator.closed(this.url, durationMs, Math.max(5000, durationMs));
    const summary = summarizeClosedLoop(closedLoopRecord(samples, CONNECTIONS, durationMs));
    return { summary, generatorCpu: samples.cpuMicros / Math.max(1, summary.requests) };
  }
}

/** The machine's 1-, 5- and 15-minute load averages: the figures move with what else runs on the cores. */
const loadAverage = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

function phaseLine(s: PhaseSummary): string {
  if (s.problem) return `not reported: ${s.problem}`;
  const unanswered = s.unanswered
    ? `; ${s.unanswered} still unanswered at the drain deadline, so these figures are a lower bound`
    : "";
  const over = s.overCapacity
    ? `, OVER CAPACITY (answers slower than sent; p50 from the actual send ${f1(s.p50Early)} ms in the first third → ${f1(s.p50Late)} ms in the last${unanswered})`
    : "";
  return `${s.achieved.toFixed(0)}/s answered, p50 ${f2(s.p50)} p99 ${f2(s.p99)} p99.9 ${f2(s.p999)} max ${f1(s.max)} ms, generator lag p99 ${f2(s.lagP99)} ms${over}`;
}

async function main() {
  const ca = await createCertificateAuthority("bench-ca");
  const leaf = await issueCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const body = typicalReview();
  const binary = await buildLoadGenerator(log);
  const plan = cpuPlan(availableParallelism(), tasksetWorks(), !process.argv.includes("--no-pin"));
  log(`load average ${loadAverage()} at the start; ${plan.note}`);
  log(
    `AdmissionReview of a 3-container pod: ${body.length} bytes; ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DURATION} s each at saturation, then at fixed loads ${LOADS.join(", ")} × the echo's throughput`,
  );
  const files = mkdtempSync(join(tmpdir(), "agentid-bench-webhook-"));
  writeFileSync(join(files, "ca.pem"), ca.certPem);
  writeFileSync(join(files, "review.json"), body);
  const generator = LoadGenerator.start({
    binary,
    caFile: join(files, "ca.pem"),
    bodyFile: join(files, "review.json"),
    connections: CONNECTIONS,
    ...(plan.generator === undefined ? {} : { cpus: plan.generator }),
  });
  const webhook = await startServer("webhook", leaf.certPem, leaf.keyPem, plan.server);
  const echo = await startServer("echo", leaf.certPem, leaf.keyPem, plan.server);
  const url = (port: number) => `https://127.0.0.1:${port}/mutate-v1-pod`;
  const webhookClient = new LoadClient(generator, url(webhook.port));
  const echoClient = new LoadClient(generator, url(echo.port));
  try {
    // The webhook must really inject (a refusal would be a cheaper answer and flatter the figures).
    const answer = JSON.parse(await post(webhook.port, body, ca.certPem)) as {
      response?: { allowed?: boolean; patch?: string };
    };
    const patch = Buffer.from(answer.response?.patch ?? "", "base64").toString();
    if (answer.response?.allowed !== true || !patch.includes("agentid-sidecar")) {
      throw new Error(`the webhook did not inject the typical pod: ${JSON.stringify(answer).slice(0, 300)}`);
    }
    log(`the webhook injects it (patch of ${patch.length} bytes)`);

    // 1. Saturation (closed loop): the throughputs and the ratio.
    log(
      "1. saturation: closed loop (each connection sends again as soon as it is answered), latency from the send to the last byte, in µs",
    );
    // Warm both (JIT, TLS session set-up) before measuring; the connections stay open for the rounds.
    for (const [server, client] of [
      [webhook, webhookClient],
      [echo, echoClient],
    ] as const) {
      await client.openConnections();
      await drive(server, client, 1);
    }
    const w: Result[] = [];
    const e: Result[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (["webhook", "echo"] as const) : (["echo", "webhook"] as const);
      for (const which of order) {
        const result =
          which === "webhook"
            ? await drive(webhook, webhookClient, DURATION)
            : await drive(echo, echoClient, DURATION);
        (which === "webhook" ? w : e).push(result);
        const s = result.summary;
        log(
          `round ${round + 1} ${which.padEnd(7)} ${s.rps.toFixed(0)} reviews/s, p50 ${f2(s.p50)} p99 ${f2(s.p99)} p99.9 ${f2(s.p999)} max ${f1(s.max)} ms, ${result.cpu.toFixed(0)} µs CPU/request, errors ${s.errors}, non-2xx ${s.non2xx}, unanswered ${s.unanswered}; generator ${result.generatorCpu.toFixed(0)} µs CPU/request; server ${gcLine(result.gc)}`,
        );
      }
    }
    const refused = [...w, ...e].find((r) => r.summary.problem)?.summary.problem;
    if (refused) throw new Error(`at saturation: ${refused}: no figures reported`);
    const wRps = median(w.map((r) => r.summary.rps));
    const eRps = median(e.map((r) => r.summary.rps));
    const wP99 = median(w.map((r) => r.summary.p99));
    const eP99 = median(e.map((r) => r.summary.p99));
    // The same rounding to µs as the paired differences, so that float error does not cross the slack.
    const saturationP99 = pairedDifferences([wP99], [eP99], SLACK_MS);
    const paired = pairedDifferences(
      w.map((r) => r.summary.p99),
      e.map((r) => r.summary.p99),
      SLACK_MS,
    );
    const wCpu = median(w.map((r) => r.cpu));
    const eCpu = median(e.map((r) => r.cpu));
    log(
      `webhook: ${wRps.toFixed(0)} reviews/s, p99 ${f2(wP99)} ms, ${wCpu.toFixed(0)} µs CPU/request (medians)`,
    );
    log(
      `bare fastify HTTPS echo: ${eRps.toFixed(0)} requests/s, p99 ${f2(eP99)} ms, ${eCpu.toFixed(0)} µs CPU/request (medians)`,
    );
    log(
      `server main-thread CPU per request, echo/webhook: ${(eCpu / wCpu).toFixed(2)} (steadier under load)`,
    );

    // 2. Fixed offered loads (open loop), fractions of the echo's saturated throughput.
    const rates = LOADS.map((load) => ({ load, rate: Math.round(load * eRps) }));
    log(
      `2. fixed offered loads: ${rates.map((r) => `${r.load} × ${eRps.toFixed(0)} = ${r.rate}/s`).join(", ")}; evenly spaced, latency from each request's intended send time, at most ${CONNECTIONS} in flight`,
    );
    const lowest = Math.min(...rates.map((r) => r.rate));
    for (const [which, client] of [
      ["webhook", webhookClient],
      ["echo", echoClient],
    ] as const) {
      await client.openConnections();
      const warm = await client.phase(lowest, 1);
      log(`warm-up ${which.padEnd(7)} ${lowest}/s offered: ${phaseLine(warm.summary)}`);
    }
    const fixed = new Map<string, PhaseSummary[]>();
    const key = (which: string, load: number) => `${which}@${load}`;
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (["webhook", "echo"] as const) : (["echo", "webhook"] as const);
      for (const { load, rate } of rates) {
        for (const which of order) {
          const { result: phase, gc } = await measured(which === "webhook" ? webhook : echo, () =>
            (which === "webhook" ? webhookClient : echoClient).phase(rate, DURATION),
          );
          fixed.set(key(which, load), [...(fixed.get(key(which, load)) ?? []), phase.summary]);
          log(
            `round ${round + 1} ${String(load).padEnd(4)} ${which.padEnd(7)} ${rate}/s offered: ${phaseLine(phase.summary)}; generator ${phase.generatorCpu.toFixed(0)} µs CPU/request; server ${gcLine(gc)}`,
          );
        }
      }
    }
    const atLoad = rates.map(({ load, rate }) => {
      const wf = loadFigures("webhook", fixed.get(key("webhook", load)) ?? []);
      const ef = loadFigures("echo", fixed.get(key("echo", load)) ?? []);
      return { load, rate, wf, ef, comparison: compareAtLoad(wf, ef, SLACK_MS) };
    });
    for (const { load, rate, wf, ef } of atLoad) {
      for (const [which, f] of [
        ["webhook", wf],
        ["echo", ef],
      ] as const) {
        log(
          `load ${load} (${rate}/s) ${which.padEnd(7)} ${f.problem ? `not reported: ${f.problem}` : `${f.achieved.toFixed(0)}/s answered, p50 ${f2(f.p50)} p99 ${f2(f.p99)} p99.9 ${f2(f.p999)} ms, generator lag p99 ${f2(f.lagP99)} ms${f.overCapacityRounds ? `, over capacity in ${f.overCapacityRounds} of ${f.rounds} rounds` : ""} (medians)`}`,
        );
      }
    }

    // The targets of issue 11, each labelled with how it was measured.
    const verdict = (met: boolean | undefined) =>
      met === undefined ? "not reported" : met ? "met" : "NOT met";
    log(`targets (issue 11), medians of ${ROUNDS} rounds, ${CONNECTIONS} connections:`);
    log(
      `  throughput ratio at saturation (closed loop): ${wRps.toFixed(0)} / ${eRps.toFixed(0)} = ${(wRps / eRps).toFixed(2)} (target ≥ 0.7): ${verdict(wRps / eRps >= 0.7)}`,
    );
    log(
      `  p99 at saturation (closed loop; mostly queueing, ${CONNECTIONS} / throughput = ${f1((CONNECTIONS / wRps) * 1000)} vs ${f1((CONNECTIONS / eRps) * 1000)} ms on average): ${f2(wP99)} vs ${f2(eP99)} + ${SLACK_MS} ms: ${verdict(saturationP99.within === 1)} ← the issue's target as worded`,
    );
    log(
      `    paired by round (webhook − echo p99 of the same round): ${paired.differences.map(signed).join(", ")} ms; median ${signed(paired.median)} ms; ${paired.within} of ${paired.differences.length} round pairs within ${SLACK_MS} ms (single rounds vary: the verdict is on the medians above)`,
    );
    for (const { load, rate, wf, ef, comparison } of atLoad) {
      const label =
        load === TARGET_LOAD ? " ← the issue's p99 target, at a load the API server could send" : "";
      const figures = comparison.met === undefined ? "" : `${f2(wf.p99)} vs ${f2(ef.p99)} + ${SLACK_MS} ms: `;
      log(
        `  p99 at fixed load ${load} × echo (${rate}/s, open loop): ${figures}${verdict(comparison.met)}${comparison.notes.length ? ` (${comparison.notes.join("; ")})` : ""}${label}`,
      );
    }
    if (!LOADS.includes(TARGET_LOAD)) {
      log(`  (--loads without ${TARGET_LOAD}: the issue's p99 target was not read at a fixed load)`);
    }
    log(`load average ${loadAverage()} at the end`);
  } finally {
    await generator.close();
    rmSync(files, { recursive: true, force: true });
    for (const server of [webhook, echo]) {
      server.child.disconnect();
      server.child.kill();
    }
  }
}

await main();
