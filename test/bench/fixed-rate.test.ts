import { describe, expect, it } from "vitest";
import {
  compareAtLoad,
  fixedRateRecord,
  intendedTime,
  loadFigures,
  median,
  microsHistogram,
  type PhaseRecord,
  type PhaseSummary,
  plannedTotal,
  rateWindow,
  summarizePhase,
} from "../../bench/fixed-rate.ts";
import type { Samples } from "../../bench/loadgen.ts";

describe("the fixed-rate schedule", () => {
  it("makes request i due at i / rate, the first at once, and plans rate × duration requests", () => {
    expect([0, 1, 2, 9].map((i) => intendedTime(i, 1000))).toEqual([0, 1, 2, 9]);
    expect(intendedTime(1, 3)).toBeCloseTo(333.333, 3);
    expect(plannedTotal(2700, 3000)).toBe(8100);
    expect(plannedTotal(0.1, 1000)).toBe(1);
  });
});

const histogramOf = (valuesMs: readonly number[]) => {
  const h = microsHistogram();
  for (const v of valuesMs) h.recordValue(v * 1000);
  return h;
};

/**
 * A phase of 1000/s whose answers took `latenciesMs`, in the order of their intended times; its rates
 * are counted over a window of one second (the sends and answers in it are the rates per second).
 */
function record(overrides: Partial<PhaseRecord>, latenciesMs: number[] = []): PhaseRecord {
  const third = Math.floor(latenciesMs.length / 3);
  return {
    rate: 1000,
    planned: latenciesMs.length,
    latency: histogramOf(latenciesMs),
    early: histogramOf(latenciesMs.slice(0, third)),
    late: histogramOf(latenciesMs.slice(latenciesMs.length - third)),
    dispatchLag: histogramOf([0.1]),
    completed: latenciesMs.length,
    errors: 0,
    non2xx: 0,
    unfinished: 0,
    window: { fromMs: 500, toMs: 1500 },
    sentInWindow: 1000,
    answeredInWindow: 1000,
    ...overrides,
  };
}

describe("the summary of a phase", () => {
  const oneToThousand = Array.from({ length: 1000 }, (_, i) => i + 1);

  it("counts the rates over the middle two thirds of the schedule", () => {
    expect(rateWindow(3000, 1000)).toEqual({ fromMs: 500, toMs: 2500 });
    expect(rateWindow(10, 100)).toEqual({ fromMs: 100 / 6, toMs: 500 / 6 });
  });

  it("gives p50, p99, p99.9 and max in ms, and the achieved and dispatched rates", () => {
    const s = summarizePhase(record({ sentInWindow: 999, answeredInWindow: 998 }, oneToThousand));
    expect(s.p50).toBeCloseTo(500, 0);
    expect(s.p99).toBeCloseTo(990, 0);
    expect(s.p999).toBeCloseTo(999, 0);
    expect(s.max).toBeCloseTo(1000, 0);
    expect(s.lagP99).toBeCloseTo(0.1, 3);
    expect(s.offered).toBe(1000);
    expect(s.dispatched).toBe(999);
    expect(s.achieved).toBe(998);
    expect(s.overCapacity).toBe(false);
    expect(s.problem).toBeUndefined();
  });

  it("refuses a phase with errors or non-2xx answers", () => {
    expect(summarizePhase(record({ errors: 1 }, oneToThousand)).problem).toMatch(
      /^1 errors and 0 non-2xx answers of 1000 requests$/,
    );
    expect(summarizePhase(record({ non2xx: 2 }, oneToThousand)).problem).toMatch(
      /^0 errors and 2 non-2xx answers/,
    );
    // Requests unanswered at the drain deadline are no error of the server: it is over capacity.
    const slow = summarizePhase(record({ unfinished: 3, completed: 997 }, oneToThousand));
    expect(slow.problem).toBeUndefined();
    expect(slow).toMatchObject({ overCapacity: true, unanswered: 3 });
  });

  it("refuses a phase whose generator sent less than 95% of the offered rate", () => {
    const s = summarizePhase(record({ sentInWindow: 908, answeredInWindow: 908 }, oneToThousand));
    expect(s.problem).toBe("the load generator could not keep up: it sent 908/s of 1000/s offered");
    // 961/s: a short stall, kept (its lag is in the latencies).
    expect(summarizePhase(record({ sentInWindow: 961, answeredInWindow: 961 }, oneToThousand)).problem).toBe(
      undefined,
    );
  });

  it("reports a server over capacity when its answers come slower than sent and its queue grows", () => {
    // Time from the actual send growing through the run: 1 ms at the start, 250 ms at the end.
    const growing = Array.from({ length: 1000 }, (_, i) => 1 + i / 4);
    const s = summarizePhase(record({ answeredInWindow: 800 }, growing));
    expect(s.achieved).toBe(800);
    expect(s.p50Early).toBeCloseTo(42.5, 0);
    expect(s.p50Late).toBeCloseTo(209, 0);
    expect(s.overCapacity).toBe(true);
    expect(s.problem).toBeUndefined();
    // Answers at 95% of the rate sent with a flat time from the actual send: no growing queue.
    expect(
      summarizePhase(record({ answeredInWindow: 950, late: histogramOf([2]), early: histogramOf([2]) }))
        .overCapacity,
    ).toBe(false);
  });

  it("does not call a server over capacity for a queue that kept pace", () => {
    // Growing latency but answers at the rate of the sends.
    const growing = Array.from({ length: 1000 }, (_, i) => 1 + i / 100);
    expect(summarizePhase(record({ answeredInWindow: 995 }, growing)).overCapacity).toBe(false);
  });

  it("does not blame the server for a generator that sent late: the answers are compared with the sends", () => {
    // The generator stalled: it sent at 961/s (kept, above 95%), and the answers kept pace with the
    // sends, slower than offered. The last third took longer from the actual send (10 ms against 2), but
    // with answers at the rate of the sends that is no queue growing without bound.
    const latencies = Array.from({ length: 1000 }, (_, i) => (i > 950 ? 40 : 2));
    const s = summarizePhase(
      record({ sentInWindow: 961, answeredInWindow: 960, late: histogramOf([10, 10, 10]) }, latencies),
    );
    expect(s.achieved).toBeLessThan(0.98 * 1000);
    expect(s.p50Late).toBeGreaterThan(2 * s.p50Early + 1);
    expect(s.problem).toBeUndefined();
    expect(s.overCapacity).toBe(false);
  });

  it("reports a server over capacity when its answers come at less than 90% of the rate sent, queue or not", () => {
    // A queue already long in the first third: the time from the send does not double.
    const long = Array.from({ length: 1000 }, (_, i) => 500 + i / 4);
    const s = summarizePhase(record({ answeredInWindow: 850 }, long));
    expect(s.p50Late).toBeLessThan(2 * s.p50Early);
    expect(s.overCapacity).toBe(true);
    // The same latencies at 95% of the rate sent: not over capacity by this rule alone.
    expect(summarizePhase(record({ answeredInWindow: 950 }, long)).overCapacity).toBe(false);
  });
});

describe("the record of a fixed-rate phase, from the generator's samples", () => {
  // The histogram keeps 3 significant digits.
  const expectMicros = (value: number, expected: number) =>
    expect(Math.abs(value - expected)).toBeLessThanOrEqual(expected / 1000);
  /** Samples of requests sent at `sentMs` (ms) and answered `tookMs` later, with these statuses (200 by default). */
  const samples = (sentMs: number[], tookMs: number[], status: number[] = []): Samples => ({
    sent: sentMs.map((t) => t * 1000),
    done: sentMs.map((t, i) => (t + (tookMs[i] ?? 0)) * 1000),
    status: sentMs.map((_, i) => status[i] ?? 200),
    cpuMicros: 0,
  });
  const onSchedule = (n: number, rate: number) => Array.from({ length: n }, (_, i) => intendedTime(i, rate));

  it("measures each answer from its intended time, and counts the rates in the middle two thirds", () => {
    const r = fixedRateRecord(samples(onSchedule(10, 100), Array(10).fill(2)), 100, 100);
    expect(r.planned).toBe(10);
    expect(r.completed).toBe(10);
    expect(r.latency.getValueAtPercentile(50)).toBe(2000);
    expect(r.latency.maxValue).toBe(2000);
    expect(r.dispatchLag.maxValue).toBe(0);
    // The window is 16.7–83.3 ms: the sends at 20..80 ms and their answers at 22..82 ms.
    expect({ sent: r.sentInWindow, answered: r.answeredInWindow }).toEqual({ sent: 7, answered: 7 });
    expect(summarizePhase(r).problem).toBeUndefined();
  });

  it("charges the requests queued behind a stalled one their wait (one connection)", () => {
    // One connection: the first answer took 100 ms; requests 1..9 (sent on time at 10..90 ms) waited for it
    // and were answered at 101..109 ms, request 10 at 110 ms, the rest 1 ms after they were sent.
    const sent = onSchedule(20, 100);
    const took = sent.map((t, i) => (i === 0 ? 100 : i < 10 ? 100 + i - t : i === 10 ? 10 : 1));
    const r = fixedRateRecord(samples(sent, took), 100, 200);
    expect(r.completed).toBe(20);
    expectMicros(r.latency.maxValue, 100_000);
    expectMicros(r.latency.getValueAtPercentile(50), 10_000);
    expectMicros(r.latency.getValueAtPercentile(95), 91_000);
    expect(r.dispatchLag.maxValue).toBe(0);
  });

  it("measures from the intended time when the generator itself sent late", () => {
    // Requests 3..7 (due at 30..70 ms) left together at 71 ms (the generator stalled) and took 1 ms.
    const sent = onSchedule(20, 100).map((t, i) => (i >= 3 && i <= 7 ? 71 : t));
    const r = fixedRateRecord(samples(sent, Array(20).fill(1)), 100, 200);
    expectMicros(r.dispatchLag.maxValue, 41_000);
    expectMicros(r.latency.maxValue, 42_000);
    expectMicros(r.latency.getValueAtPercentile(75), 1_000);
    expectMicros(r.latency.getValueAtPercentile(80), 2_000);
    // From the actual send they took 1 ms: no queue grew, so the thirds used to tell an overloaded server stay flat.
    expectMicros(r.early.maxValue, 1_000);
    expectMicros(r.late.maxValue, 1_000);
  });

  it("counts failed requests, non-2xx answers and those aborted at the drain deadline", () => {
    const r = fixedRateRecord(
      samples(onSchedule(5, 100), [1, 1, 1, 100, 100], [0, 503, 200, -1, -1]),
      100,
      50,
    );
    expect({ errors: r.errors, non2xx: r.non2xx, completed: r.completed, unfinished: r.unfinished }).toEqual({
      errors: 1,
      non2xx: 1,
      completed: 1,
      unfinished: 2,
    });
    expect(summarizePhase(r)).toMatchObject({
      problem: "1 errors and 1 non-2xx answers of 5 requests",
      unanswered: 2,
      overCapacity: true,
    });
  });

  it("refuses samples that are not the phase's plan", () => {
    expect(() => fixedRateRecord(samples(onSchedule(9, 100), Array(9).fill(1)), 100, 100)).toThrow(
      /plans 10 requests, not 9/,
    );
  });
});

describe("the comparison at one load", () => {
  const phase = (p99: number, extra: Partial<PhaseSummary> = {}): PhaseSummary => ({
    offered: 1000,
    achieved: 998,
    dispatched: 1000,
    p50: p99 / 4,
    p99,
    p999: p99 * 1.5,
    max: p99 * 2,
    p50Early: p99 / 4,
    p50Late: p99 / 4,
    lagP99: 0.2,
    overCapacity: false,
    unanswered: 0,
    ...extra,
  });

  it("takes medians of rounds", () => {
    const f = loadFigures("webhook", [phase(3), phase(9), phase(4), phase(5, { overCapacity: true })]);
    expect(f).toMatchObject({ name: "webhook", p99: 4.5, p50: 1.125, overCapacityRounds: 1, rounds: 4 });
    expect(f.problem).toBeUndefined();
    expect(median([])).toBe(0);
    expect(median([3, 1, 2])).toBe(2);
  });

  it("meets the target when the candidate's p99 is within the slack of the baseline's", () => {
    const echo = loadFigures("echo", [phase(2), phase(2.5), phase(3)]);
    expect(compareAtLoad(loadFigures("webhook", [phase(3.5), phase(3.4), phase(9)]), echo, 1)).toEqual({
      met: true,
      notes: [],
    });
    expect(compareAtLoad(loadFigures("webhook", [phase(3.6), phase(3.6), phase(3.6)]), echo, 1).met).toBe(
      false,
    );
  });

  it("withholds the verdict when a round of either side was refused", () => {
    const bad = phase(1, {
      problem: "the load generator could not keep up: it sent 900/s of 1000/s offered",
    });
    const echo = loadFigures("echo", [phase(2), bad]);
    expect(compareAtLoad(loadFigures("webhook", [phase(2)]), echo, 1)).toEqual({
      met: undefined,
      notes: ["echo: the load generator could not keep up: it sent 900/s of 1000/s offered"],
    });
  });

  it("fails a candidate over capacity in most rounds whatever its p99, and says why", () => {
    const over = phase(1.5, { overCapacity: true, achieved: 900, p50Early: 1, p50Late: 80 });
    const c = compareAtLoad(
      loadFigures("webhook", [over, over, phase(1)]),
      loadFigures("echo", [phase(2)]),
      1,
    );
    expect(c.met).toBe(false);
    expect(c.notes).toEqual([
      "webhook over capacity in 2 of 3 rounds: 900/s answered, p50 from the actual send 1.0 ms in the first third → 80.0 ms in the last",
    ]);
  });

  it("says when the generator's own lag exceeds the slack", () => {
    const c = compareAtLoad(
      loadFigures("webhook", [phase(20, { lagP99: 7 })]),
      loadFigures("echo", [phase(19.5)]),
      1,
    );
    expect(c).toEqual({
      met: true,
      notes: ["the generator's own lag p99 (7.0 ms, included in both) exceeds the 1 ms slack"],
    });
  });
});
