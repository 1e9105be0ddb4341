import { build, type Histogram } from "hdr-histogram-js";
import type { Samples } from "./loadgen.ts";

/**
 * A fixed offered load (open loop), as wrk2 drives one: requests are due at evenly spaced intended times
 * (request i at i / rate seconds, never in once-a-second bursts), and each latency is measured from the
 * request's intended send time, not from when it was actually sent. A request that waits because the
 * server (or the client's connection pool, at most `connections` in flight) is still busy with earlier
 * ones is charged that wait, so a stall is not hidden by the requests that were never sent during it
 * (coordinated omission). bench/loadgen does the sending; the schedule, the record made of its samples
 * and the summary are pure functions.
 */

/** Intended send time of request `i` (0-based), in ms from the start of the phase. */
export function intendedTime(i: number, rate: number): number {
  return (i * 1000) / rate;
}

/** The number of requests a phase of `durationMs` at `rate` per second offers (at least one). */
export function plannedTotal(rate: number, durationMs: number): number {
  return Math.max(1, Math.round((rate * durationMs) / 1000));
}

/** A histogram of microseconds, 3 significant digits (as wrk2 keeps; autocannon keeps 5, of whole milliseconds). */
export function microsHistogram(): Histogram {
  return build({ numberOfSignificantValueDigits: 3 });
}

/** What one phase recorded (times in ms from the phase's start, histograms in µs). */
export interface PhaseRecord {
  /** Offered rate, requests per second. */
  rate: number;
  planned: number;
  /** Latency of every 2xx answer from its intended send time to its last body byte. */
  latency: Histogram;
  /**
   * Time from the actual send to the last body byte, of the first and of the last third of the schedule:
   * a queue that grows in the client's pool or in the server shows here, a stall of the generator (which
   * delays the sends, not the answers) does not.
   */
  early: Histogram;
  late: Histogram;
  /** How late each request was handed to the client after its intended time (the generator's own lag). */
  dispatchLag: Histogram;
  completed: number;
  errors: number;
  non2xx: number;
  /** Requests still unanswered when the drain deadline passed (aborted). */
  unfinished: number;
  /**
   * The middle two thirds of the schedule: the rates are counted there, so that neither the start nor a
   * stall at the end (another process had the core while the last answers came) moves them.
   */
  window: { fromMs: number; toMs: number };
  /** Requests handed to the client within the window. */
  sentInWindow: number;
  /** 2xx answers that arrived within the window. */
  answeredInWindow: number;
}

/** The middle two thirds of a schedule of `planned` requests at `rate`. */
export function rateWindow(planned: number, rate: number): { fromMs: number; toMs: number } {
  const length = intendedTime(planned, rate);
  return { fromMs: length / 6, toMs: (length * 5) / 6 };
}

export interface PhaseSummary {
  offered: number;
  /** 2xx answers per second, within the middle two thirds of the schedule. */
  achieved: number;
  /** Requests handed to the client per second, within the same window: what the generator kept up with. */
  dispatched: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** p50 of the time from the actual send, in the first and in the last third of the schedule (ms). */
  p50Early: number;
  p50Late: number;
  /** The generator's own lag (ms), p99: included in the latencies above. */
  lagP99: number;
  /**
   * The server is over capacity: the answers came slower than the requests were sent and the queue grew
   * during the run (the last third's p50 from the actual send more than twice the first third's, plus
   * 1 ms), or they came at less than 90% of that rate (a queue already long in the first third), so the
   * latency grows with the length of the run and has no steady value. Also when requests were still
   * unanswered at the drain deadline (then the figures are of the answered ones only: a lower bound).
   */
  overCapacity: boolean;
  /** Requests still unanswered at the drain deadline (aborted; not errors of the server). */
  unanswered: number;
  /** Why the phase must not be reported: errors, non-2xx answers, or a generator that fell behind. */
  problem?: string;
}

/**
 * Below this share of the rate the requests were sent at, the answers came too slowly (answers trail the
 * sends by their latency, a few ms at either end of a window of seconds).
 */
export const KEPT_UP = 0.98;
/** Below this share the answers were too slow whatever the latency did. */
export const FAR_BEHIND = 0.9;
/**
 * Below this share of the offered rate the generator itself did not send on schedule. Looser than
 * KEPT_UP: a short stall of the generator (another process had the core) delays some sends without
 * meaning it could not keep the rate; its lag is recorded and included in the latencies either way.
 */
export const GENERATOR_KEPT_UP = 0.95;

const ms = (micros: number) => micros / 1000;

/** The summary of one phase (pure). */
export function summarizePhase(r: PhaseRecord): PhaseSummary {
  const seconds = (r.window.toMs - r.window.fromMs) / 1000;
  const dispatched = seconds > 0 ? r.sentInWindow / seconds : 0;
  const achieved = seconds > 0 ? r.answeredInWindow / seconds : 0;
  const at = (p: number) => ms(r.latency.getValueAtPercentile(p));
  const summary: PhaseSummary = {
    offered: r.rate,
    achieved,
    dispatched,
    p50: at(50),
    p99: at(99),
    p999: at(99.9),
    max: ms(r.latency.maxValue),
    p50Early: ms(r.early.getValueAtPercentile(50)),
    p50Late: ms(r.late.getValueAtPercentile(50)),
    lagP99: ms(r.dispatchLag.getValueAtPercentile(99)),
    overCapacity: false,
    unanswered: r.unfinished,
  };
  // Against what was sent, not what was offered: a generator that stalled sent late, and that is no
  // fault of the server (its lag is in the latencies, and a phase that sent < 95% is refused below).
  const sentAt = dispatched;
  const grew = summary.p50Late > 2 * summary.p50Early + 1;
  summary.overCapacity =
    r.unfinished > 0 || (achieved < KEPT_UP * sentAt && (grew || achieved < FAR_BEHIND * sentAt));
  if (r.errors > 0 || r.non2xx > 0) {
    summary.problem = `${r.errors} errors and ${r.non2xx} non-2xx answers of ${r.planned} requests`;
  } else if (dispatched < GENERATOR_KEPT_UP * r.rate) {
    summary.problem = `the load generator could not keep up: it sent ${dispatched.toFixed(0)}/s of ${r.rate.toFixed(0)}/s offered`;
  }
  return summary;
}

/**
 * The record of a phase from the generator's samples (pure). Request i was due at intendedTime(i, rate);
 * its latency runs from then to its answer's last byte, its lag from then to when it was handed to the
 * client, and the early and late histograms take the time from that hand-over, of the first and the last
 * third of the schedule.
 */
export function fixedRateRecord(samples: Samples, rate: number, durationMs: number): PhaseRecord {
  const planned = plannedTotal(rate, durationMs);
  if (samples.status.length !== planned)
    throw new Error(
      `a fixed load of ${rate}/s for ${durationMs} ms plans ${planned} requests, not ${samples.status.length}`,
    );
  const record: PhaseRecord = {
    rate,
    planned,
    latency: microsHistogram(),
    early: microsHistogram(),
    late: microsHistogram(),
    dispatchLag: microsHistogram(),
    completed: 0,
    errors: 0,
    non2xx: 0,
    unfinished: 0,
    window: rateWindow(planned, rate),
    sentInWindow: 0,
    answeredInWindow: 0,
  };
  const inWindow = (t: number) => t >= record.window.fromMs && t < record.window.toMs;
  const micros = (millis: number) => Math.max(0, Math.round(millis * 1000));
  samples.status.forEach((status, i) => {
    const intended = intendedTime(i, rate);
    const dispatched = (samples.sent[i] ?? 0) / 1000;
    const done = (samples.done[i] ?? 0) / 1000;
    record.dispatchLag.recordValue(micros(dispatched - intended));
    if (inWindow(dispatched)) record.sentInWindow++;
    if (status === -1) record.unfinished++;
    else if (status === 0) record.errors++;
    else if (status >= 200 && status < 300) {
      record.completed++;
      if (inWindow(done)) record.answeredInWindow++;
      record.latency.recordValue(micros(done - intended));
      const service = micros(done - dispatched);
      if (i < planned / 3) record.early.recordValue(service);
      else if (i >= (2 * planned) / 3) record.late.recordValue(service);
    } else record.non2xx++;
  });
  return record;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

/** One server's rounds at one load: medians of rounds, or why they are not reported. */
export interface LoadFigures {
  name: string;
  achieved: number;
  p50: number;
  p99: number;
  p999: number;
  p50Early: number;
  p50Late: number;
  lagP99: number;
  /** Rounds in which the server was over capacity. */
  overCapacityRounds: number;
  rounds: number;
  problem?: string;
}

/** Medians of one server's rounds at one load (pure); any round with a problem withholds them all. */
export function loadFigures(name: string, rounds: readonly PhaseSummary[]): LoadFigures {
  const of = (f: (s: PhaseSummary) => number) => median(rounds.map(f));
  const problem = rounds.find((r) => r.problem)?.problem;
  return {
    name,
    achieved: of((r) => r.achieved),
    p50: of((r) => r.p50),
    p99: of((r) => r.p99),
    p999: of((r) => r.p999),
    p50Early: of((r) => r.p50Early),
    p50Late: of((r) => r.p50Late),
    lagP99: of((r) => r.lagP99),
    overCapacityRounds: rounds.filter((r) => r.overCapacity).length,
    rounds: rounds.length,
    ...(problem === undefined ? {} : { problem }),
  };
}

export interface Comparison {
  /** Whether the candidate's p99 is within `slackMs` of the baseline's; undefined when not reported. */
  met: boolean | undefined;
  /** Why, in words: a refused round, a server over capacity, a generator whose own lag exceeds the slack. */
  notes: string[];
}

/**
 * The target at one load (pure): the candidate's p99 no more than the baseline's + `slackMs`. Not
 * reported when either side had a refused round; a candidate over capacity in most rounds does not meet
 * it whatever its figures (its latency grows with the length of the run, so they depend on that length).
 */
export function compareAtLoad(candidate: LoadFigures, baseline: LoadFigures, slackMs: number): Comparison {
  for (const side of [candidate, baseline]) {
    if (side.problem !== undefined) return { met: undefined, notes: [`${side.name}: ${side.problem}`] };
  }
  const most = (f: LoadFigures) => f.overCapacityRounds * 2 > f.rounds;
  const notes: string[] = [];
  let met = candidate.p99 <= baseline.p99 + slackMs;
  for (const side of [candidate, baseline]) {
    if (most(side)) {
      notes.push(
        `${side.name} over capacity in ${side.overCapacityRounds} of ${side.rounds} rounds: ${side.achieved.toFixed(0)}/s answered, p50 from the actual send ${side.p50Early.toFixed(1)} ms in the first third → ${side.p50Late.toFixed(1)} ms in the last`,
      );
    }
  }
  if (most(candidate)) met = false;
  const lag = Math.max(candidate.lagP99, baseline.lagP99);
  if (lag > slackMs) {
    notes.push(
      `the generator's own lag p99 (${lag.toFixed(1)} ms, included in both) exceeds the ${slackMs} ms slack`,
    );
  }
  return { met, notes };
}
