import type { Histogram } from "hdr-histogram-js";
import { median, microsHistogram } from "./fixed-rate.ts";
import type { Samples } from "./loadgen.ts";

/**
 * A closed loop at saturation, as autocannon drives one: `connections` loops, each sending its next
 * request as soon as the answer to its last one has arrived whole, for a duration (bench/loadgen does the
 * sending). Unlike autocannon, latencies are recorded in microseconds (autocannon truncates each to whole
 * milliseconds, too coarse for a 1 ms slack at p99s of 5 ms). The record, the summary and the paired
 * comparison of rounds are pure.
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

/**
 * The record of a phase from the generator's samples (pure): answers after the duration count in the
 * latencies, not in the throughput; a failed request is an error, an aborted one unfinished.
 */
export function closedLoopRecord(
  samples: Samples,
  connections: number,
  durationMs: number,
): ClosedLoopRecord {
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
  const durationMicros = durationMs * 1000;
  samples.status.forEach((status, i) => {
    const sent = samples.sent[i] ?? 0;
    const done = samples.done[i] ?? 0;
    if (status === -1) record.unfinished++;
    else if (status === 0) record.errors++;
    else if (status >= 200 && status < 300) {
      record.completed++;
      if (done <= durationMicros) record.answeredInDuration++;
      record.latency.recordValue(Math.max(0, done - sent));
    } else record.non2xx++;
  });
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
