import { build, type Histogram } from "hdr-histogram-js";
import type { Pool } from "undici";

/**
 * A fixed offered load (open loop), as wrk2 drives one: requests are due at evenly spaced intended times
 * (request i at i / rate seconds, never in once-a-second bursts), and each latency is measured from the
 * request's intended send time, not from when it was actually sent. A request that waits because the
 * server (or the client's connection pool, at most `connections` in flight) is still busy with earlier
 * ones is charged that wait, so a stall is not hidden by the requests that were never sent during it
 * (coordinated omission). The schedule and the summary are pure functions; `runFixedRate` does the I/O
 * with an injected clock, so tests drive it with fake timers.
 */

/** Intended send time of request `i` (0-based), in ms from the start of the phase. */
export function intendedTime(i: number, rate: number): number {
  return (i * 1000) / rate;
}

/** How many of the `total` requests are due at `elapsedMs` after the start: those whose intended time has come. */
export function dueCount(elapsedMs: number, rate: number, total: number): number {
  if (elapsedMs < 0) return 0;
  // The closed form, then nudged so that it agrees exactly with intendedTime (floating-point rounding).
  let n = Math.floor((elapsedMs * rate) / 1000) + 1;
  while (n < total && intendedTime(n, rate) <= elapsedMs) n++;
  while (n > 0 && intendedTime(n - 1, rate) > elapsedMs) n--;
  return Math.min(n, total);
}

/** The number of requests a phase of `durationMs` at `rate` per second offers (at least one). */
export function plannedTotal(rate: number, durationMs: number): number {
  return Math.max(1, Math.round((rate * durationMs) / 1000));
}

/** A histogram of microseconds, 3 significant digits (as autocannon and wrk2 keep). */
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
  /** How late each request was handed to the client after its intended time (the generator's own lag). */
  dispatchLag: Histogram;
  completed: number;
  errors: number;
  non2xx: number;
  /** Requests still unanswered when the drain deadline passed (aborted). */
  unfinished: number;
  lastDispatchMs: number;
  lastCompletionMs: number;
}

export interface PhaseSummary {
  offered: number;
  /** Answers per second: completed ÷ time from the start to the last answer. */
  achieved: number;
  /** Requests handed to the client per second: what the generator itself kept up with. */
  dispatched: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** The generator's own lag (ms), p99: included in the latencies above. */
  lagP99: number;
  /** The answers came slower than the offered rate: the server is over capacity and its latency grows with the run. */
  overCapacity: boolean;
  /** Set when the phase must not be reported: errors, non-2xx, unfinished requests, or a generator that fell behind. */
  problem?: string;
}

/** Below this share of the offered rate, the generator or the server did not keep up (timers and the drain cost <1%). */
export const KEPT_UP = 0.98;

const ms = (micros: number) => micros / 1000;

/** The summary of one phase (pure). */
export function summarizePhase(r: PhaseRecord): PhaseSummary {
  const period = 1000 / r.rate;
  const dispatched = r.planned / ((r.lastDispatchMs + period) / 1000);
  const achieved = r.completed > 0 ? r.completed / (Math.max(r.lastCompletionMs, period) / 1000) : 0;
  const at = (p: number) => ms(r.latency.getValueAtPercentile(p));
  const summary: PhaseSummary = {
    offered: r.rate,
    achieved,
    dispatched,
    p50: at(50),
    p99: at(99),
    p999: at(99.9),
    max: ms(r.latency.maxValue),
    lagP99: ms(r.dispatchLag.getValueAtPercentile(99)),
    overCapacity: achieved < KEPT_UP * r.rate,
  };
  if (r.errors > 0 || r.non2xx > 0 || r.unfinished > 0) {
    summary.problem = `${r.errors} errors, ${r.non2xx} non-2xx, ${r.unfinished} unanswered of ${r.planned}: not reported`;
  } else if (dispatched < KEPT_UP * r.rate) {
    summary.problem = `the load generator could not keep up: it sent ${dispatched.toFixed(0)}/s of ${r.rate.toFixed(0)}/s offered: not reported`;
  }
  return summary;
}

/** Sends one request; resolves with the status code once the whole answer is read. */
export type Send = (signal: AbortSignal) => Promise<number>;

export interface FixedRateOptions {
  rate: number;
  durationMs: number;
  send: Send;
  /** After the last intended send, how long unanswered requests may take before they are aborted. */
  drainMs: number;
  /** Milliseconds, monotonic (performance.now by default). */
  now?: () => number;
}

/**
 * Offers `rate` requests per second for `durationMs`, then waits for the answers (at most `drainMs`).
 * Timers fire about once a millisecond at best, so the requests due within one millisecond leave together;
 * their intended times stay exact and the lag is recorded.
 */
export async function runFixedRate(options: FixedRateOptions): Promise<PhaseRecord> {
  const { rate, send, drainMs } = options;
  const now = options.now ?? (() => performance.now());
  const planned = plannedTotal(rate, options.durationMs);
  const record: PhaseRecord = {
    rate,
    planned,
    latency: microsHistogram(),
    dispatchLag: microsHistogram(),
    completed: 0,
    errors: 0,
    non2xx: 0,
    unfinished: 0,
    lastDispatchMs: 0,
    lastCompletionMs: 0,
  };
  const abort = new AbortController();
  const pending = new Set<Promise<void>>();
  const micros = (millis: number) => Math.max(0, Math.round(millis * 1000));
  const start = now();
  let sent = 0;
  while (sent < planned) {
    const due = dueCount(now() - start, rate, planned);
    for (; sent < due; sent++) {
      const intended = intendedTime(sent, rate);
      const dispatched = now() - start;
      record.dispatchLag.recordValue(micros(dispatched - intended));
      record.lastDispatchMs = dispatched;
      const answer: Promise<void> = send(abort.signal).then(
        (status) => {
          const done = now() - start;
          record.lastCompletionMs = Math.max(record.lastCompletionMs, done);
          if (status >= 200 && status < 300) {
            record.completed++;
            record.latency.recordValue(micros(done - intended));
          } else {
            record.non2xx++;
          }
        },
        () => {
          if (abort.signal.aborted) record.unfinished++;
          else record.errors++;
        },
      );
      pending.add(answer);
      void answer.finally(() => pending.delete(answer));
    }
    if (sent < planned) await sleep(intendedTime(sent, rate) - (now() - start));
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, drainMs);
  });
  await Promise.race([Promise.allSettled(pending), deadline]);
  clearTimeout(timer);
  if (pending.size > 0) {
    abort.abort();
    await Promise.allSettled(pending);
  }
  return record;
}

const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, millis)));

/** A Send over an undici Pool (its `connections` bound the requests in flight; the rest wait in its queue). */
export function poolSender(
  pool: Pool,
  request: { path: string; body: string; headers: Record<string, string> },
): Send {
  return async (signal) => {
    const res = await pool.request({ ...request, method: "POST", signal });
    // The answers are a few KB; the limit only guards against a runaway body.
    await res.body.dump({ limit: 1 << 20, signal });
    return res.statusCode;
  };
}
