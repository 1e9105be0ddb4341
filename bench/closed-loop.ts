import type { Histogram } from "hdr-histogram-js";
import { median, microsHistogram, type Send } from "./fixed-rate.ts";

/**
 * A closed loop at saturation, as autocannon drives one: `connections` loops, each sending its next
 * request as soon as the answer to its last one has arrived whole, for a duration. Unlike autocannon,
 * latencies are recorded in microseconds (autocannon truncates each to whole milliseconds, too coarse for
 * a 1 ms slack at p99s of 5 ms). The loop takes the same `Send` as the fixed-rate phase
 * (bench/fixed-rate.ts `poolClient`) and an injected clock, so tests drive it with fake timers; the
 * summary and the paired comparison of rounds are pure.
 */

/** What one closed-loop phase recorded (histogram in µs). */
export interface ClosedLoopRecord {
  connections: number;
  durationMs: number;
  /** Time from each 2xx request's send to its answer's last byte. */
  latency: Histogram;
  /** 2xx answers. */
  completed: number;
  /** 2xx answers that arrived within the duration: the throughput is counted from these. */
  answeredInDuration: number;
  non2xx: number;
  errors: number;
  /** Requests still unanswered when the drain deadline passed (aborted). */
  unfinished: number;
}

export interface ClosedLoopOptions {
  connections: number;
  durationMs: number;
  send: Send;
  /** After the duration, how long the requests still in flight may take before they are aborted. */
  drainMs: number;
  /** Makes every unanswered request fail (called once the drain deadline has passed). */
  abortAll: () => Promise<void>;
  /** Milliseconds, monotonic (performance.now by default). */
  now?: () => number;
}

/**
 * Runs `connections` loops for `durationMs`: none sends after the duration; what is then in flight is
 * awaited (at most `drainMs`, then aborted) and counted in the latencies, not in the throughput. A loop
 * whose request failed sends no more: an error withholds the phase's figures anyway, and a request that
 * fails at once would otherwise spin the loop without yielding to the answers of the others.
 */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<ClosedLoopRecord> {
  const { connections, durationMs, send } = options;
  if (!(Number.isInteger(connections) && connections > 0))
    throw new Error(`a closed loop needs a positive whole number of connections, not ${connections}`);
  if (!(Number.isFinite(durationMs) && durationMs > 0))
    throw new Error(`a closed loop needs a positive duration, not ${durationMs}`);
  const now = options.now ?? (() => performance.now());
  const record: ClosedLoopRecord = {
    connections,
    durationMs,
    latency: microsHistogram(),
    completed: 0,
    answeredInDuration: 0,
    non2xx: 0,
    errors: 0,
    unfinished: 0,
  };
  const micros = (millis: number) => Math.max(0, Math.round(millis * 1000));
  let timedOut = false;
  const start = now();
  const loop = async () => {
    while (now() - start < durationMs) {
      const sent = now();
      let status: number;
      try {
        status = await send();
      } catch {
        if (timedOut) record.unfinished++;
        else record.errors++;
        return;
      }
      const done = now();
      if (status >= 200 && status < 300) {
        record.completed++;
        if (done - start <= durationMs) record.answeredInDuration++;
        record.latency.recordValue(micros(done - sent));
      } else {
        record.non2xx++;
      }
    }
  };
  const loops = Promise.all(Array.from({ length: connections }, loop));
  // The drain deadline is armed when the duration is over (a timer for the duration, then one for the drain).
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      timer = setTimeout(resolve, options.drainMs);
    }, durationMs);
  });
  const finished = await Promise.race([loops.then(() => true), deadline.then(() => false)]);
  clearTimeout(timer);
  if (!finished) {
    timedOut = true;
    await options.abortAll();
    await loops;
  }
  return record;
}

export interface ClosedLoopSummary {
  /** 2xx answers per second within the duration. */
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Every request answered or failed: the denominator of the CPU time per request. */
  requests: number;
  errors: number;
  non2xx: number;
  unanswered: number;
  /** Why the phase must not be reported: errors, non-2xx answers, or requests left unanswered. */
  problem?: string;
}

const ms = (micros: number) => micros / 1000;

/** The summary of one closed-loop phase (pure); latencies in ms, with µs resolution. */
export function summarizeClosedLoop(r: ClosedLoopRecord): ClosedLoopSummary {
  const at = (p: number) => ms(r.latency.getValueAtPercentile(p));
  const summary: ClosedLoopSummary = {
    rps: (r.answeredInDuration * 1000) / r.durationMs,
    p50: at(50),
    p99: at(99),
    p999: at(99.9),
    max: ms(r.latency.maxValue),
    requests: r.completed + r.non2xx + r.errors + r.unfinished,
    errors: r.errors,
    non2xx: r.non2xx,
    unanswered: r.unfinished,
  };
  if (r.errors > 0 || r.non2xx > 0 || r.unfinished > 0) {
    summary.problem = `${r.errors} errors, ${r.non2xx} non-2xx answers and ${r.unfinished} unanswered at the drain deadline`;
  }
  return summary;
}

export interface PairedDifferences {
  /** Candidate minus baseline, round by round (ms). */
  differences: number[];
  median: number;
  /** Round pairs in which the candidate is within the slack of the baseline. */
  within: number;
}

/**
 * The per-round differences of two servers measured in the same rounds (pure): a round's pair shares
 * the machine's state of that moment, so their difference varies less than either figure.
 */
export function pairedDifferences(
  candidate: readonly number[],
  baseline: readonly number[],
  slackMs: number,
): PairedDifferences {
  if (candidate.length !== baseline.length)
    throw new Error(`paired rounds need as many of each: ${candidate.length} against ${baseline.length}`);
  // To whole µs, the histograms' unit, so that float rounding does not move a difference across the slack.
  const differences = candidate.map((c, i) => Math.round((c - (baseline[i] ?? 0)) * 1000) / 1000);
  return {
    differences,
    median: median(differences),
    within: differences.filter((d) => d <= slackMs).length,
  };
}
