import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { promisify } from "node:util";

/**
 * bench/webhook's load generator: the Go program in bench/loadgen (why Go: its main.go), built here on
 * first use into the user's cache (never into the repository) and driven over its stdin and stdout, one
 * JSON line per command and per answer. What it answers are each request's times; bench/closed-loop.ts
 * and bench/fixed-rate.ts turn them into figures (pure functions).
 */

const SOURCE_DIR = new URL("./loadgen/", import.meta.url).pathname;

/** One phase's requests, in the order sent: µs from the phase's start; status 0 failed, -1 aborted at the drain deadline. */
export interface Samples {
  sent: number[];
  done: number[];
  status: number[];
  /** The generator's CPU time (user + system, all threads) during the phase, µs. */
  cpuMicros: number;
}

const isNumberArray = (v: unknown): v is number[] =>
  Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));

/** A phase's answer from the generator, checked (pure): the samples, or an error that says what is wrong. */
export function parseSamples(answer: unknown): Samples {
  const a = (answer ?? {}) as Record<string, unknown>;
  if (typeof a.error === "string") throw new Error(`the load generator refused the phase: ${a.error}`);
  const { sent, done, status, cpuMicros } = a;
  if (!isNumberArray(sent) || !isNumberArray(done) || !isNumberArray(status) || typeof cpuMicros !== "number")
    throw new Error("the load generator answered a phase without sent, done, status and cpuMicros");
  if (sent.length !== done.length || sent.length !== status.length)
    throw new Error(
      `the load generator answered ${sent.length} send times, ${done.length} answer times and ${status.length} statuses`,
    );
  return { sent, done, status, cpuMicros };
}

/** Where the built generator lives: the cache of the user (XDG_CACHE_HOME or ~/.cache), by source hash. */
export function loadGeneratorPath(sourceHash: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "agentid", "bench", `loadgen-${sourceHash.slice(0, 16)}`);
}

function sourceHash(goVersion: string): string {
  const hash = createHash("sha256").update(goVersion);
  for (const name of readdirSync(SOURCE_DIR).sort()) {
    if (name.endsWith(".go") || name === "go.mod")
      hash.update(name).update(readFileSync(join(SOURCE_DIR, name)));
  }
  return hash.digest("hex");
}

/**
 * The generator's binary: built with `go build` when its sources or Go changed (standard library only, no
 * download), else the one built before. Says what it does through `log`.
 */
export async function buildLoadGenerator(log: (line: string) => void): Promise<string> {
  const go = spawnSync("go", ["version"], { encoding: "utf8" });
  if (go.error || go.status !== 0)
    throw new Error(
      "bench:webhook needs Go (>= 1.24) on the PATH to build its load generator (bench/loadgen); the project's .ci/run needs it too",
    );
  const binary = loadGeneratorPath(sourceHash(go.stdout.trim()));
  if (existsSync(binary)) return binary;
  log(`building the load generator (bench/loadgen, ${go.stdout.trim()}) into ${binary}`);
  mkdirSync(join(binary, ".."), { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  try {
    // The flags of the control plane's build (src/dev/controlplane-go.ts), so that Go's build cache already
    // holds the standard library compiled this way: a few seconds instead of about 20 on two cores.
    await promisify(execFile)("go", ["build", "-trimpath", "-o", partial, "."], {
      cwd: SOURCE_DIR,
      env: { ...process.env, CGO_ENABLED: "0" },
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`go build of bench/loadgen failed: ${stderr.trim() || (error as Error).message}`);
  }
  renameSync(partial, binary);
  return binary;
}

/** A command line, under `taskset -c cpus` when given (Linux: the process and every thread it starts). */
export function pinnedCommand(
  command: string,
  args: readonly string[],
  cpus: string | undefined,
): { command: string; args: string[] } {
  return cpus === undefined
    ? { command, args: [...args] }
    : { command: "taskset", args: ["-c", cpus, command, ...args] };
}

/**
 * Which CPUs the servers and the generator run on (pure): on a machine with two or more and `taskset`,
 * the servers get the last CPU to themselves and the generator the others, so that neither takes the
 * other's core in the middle of a request; otherwise nothing is pinned, and the note says why.
 */
export function cpuPlan(
  cpus: number,
  tasksetWorks: boolean,
  wanted: boolean,
): { server?: string; generator?: string; note: string } {
  if (!wanted) return { note: "not pinned (--no-pin): the servers and the generator share every CPU" };
  if (cpus < 2) return { note: "not pinned: one CPU, shared by the servers and the generator" };
  if (!tasksetWorks)
    return {
      note: "not pinned: no taskset (util-linux) here; the servers and the generator share every CPU",
    };
  const last = cpus - 1;
  const generator = last === 1 ? "0" : `0-${last - 1}`;
  return {
    server: String(last),
    generator,
    note: `pinned: the server under test on CPU ${last}, the load generator on CPU ${generator}`,
  };
}

/** Whether `taskset` can pin a process here (it exists and the kernel lets it). */
export function tasksetWorks(): boolean {
  const r = spawnSync("taskset", ["-c", "0", "true"]);
  return !r.error && r.status === 0;
}

/** The running generator: one command at a time, each answered by one line. */
export class LoadGenerator {
  private readonly child: ChildProcess;
  private readonly lines: Interface;
  private readonly waiting: Array<(line: string) => void> = [];
  private exited: Error | undefined;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    this.lines.on("line", (line) => this.waiting.shift()?.(line));
    const ended = (why: string) => {
      this.exited ??= new Error(`the load generator ${why}`);
      for (const w of this.waiting.splice(0)) w(JSON.stringify({ error: this.exited.message }));
    };
    child.once("exit", (code, signal) => ended(`exited (${signal ?? code})`));
    child.once("error", (error) => ended(`could not run: ${error.message}`));
  }

  static start(options: {
    binary: string;
    caFile: string;
    bodyFile: string;
    connections: number;
    cpus?: string;
  }): LoadGenerator {
    const { command, args } = pinnedCommand(
      options.binary,
      ["-ca", options.caFile, "-body", options.bodyFile, "-connections", String(options.connections)],
      options.cpus,
    );
    return new LoadGenerator(spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] }));
  }

  private ask(command: Record<string, unknown>): Promise<unknown> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.waiting.push((line) => {
        try {
          resolve(JSON.parse(line));
        } catch {
          reject(new Error(`the load generator answered something that is not JSON: ${line.slice(0, 200)}`));
        }
      });
      this.child.stdin?.write(`${JSON.stringify(command)}\n`);
    });
  }

  /**
   * Opens every connection (TLS handshakes done before any measured phase): the statuses of its last
   * round of requests, and how many distinct connections carried one.
   */
  async open(url: string): Promise<{ statuses: number[]; connections: number }> {
    const answer = (await this.ask({ op: "open", url })) as {
      statuses?: unknown;
      connections?: unknown;
      error?: string;
    };
    if (typeof answer.error === "string")
      throw new Error(`the load generator could not open connections: ${answer.error}`);
    if (!isNumberArray(answer.statuses) || typeof answer.connections !== "number")
      throw new Error("the load generator answered open without statuses and connections");
    return { statuses: answer.statuses, connections: answer.connections };
  }

  /** A closed loop at saturation (bench/closed-loop.ts). */
  async closed(url: string, durationMs: number, drainMs: number): Promise<Samples> {
    return parseSamples(await this.ask({ op: "closed", url, durationMs, drainMs }));
  }

  /** A fixed offered load (bench/fixed-rate.ts). */
  async fixed(url: string, rate: number, durationMs: number, drainMs: number): Promise<Samples> {
    return parseSamples(await this.ask({ op: "fixed", url, rate, durationMs, drainMs }));
  }

  /** Ends the generator (closing its stdin ends its command loop) and waits for it to exit. */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdin?.end();
    await exited;
    this.lines.close();
  }
}
