import { describe, expect, it } from "vitest";
import {
  type ClosedLoopRecord,
  closedLoopRecord,
  pairedDifferences,
  summarizeClosedLoop,
} from "../../bench/closed-loop.ts";
import { microsHistogram } from "../../bench/fixed-rate.ts";
import type { Samples } from "../../bench/loadgen.ts";

describe("the record of a closed-loop phase, from the generator's samples", () => {
  const samples = (rows: Array<[sentUs: number, doneUs: number, status: number]>): Samples => ({
    sent: rows.map((r) => r[0]),
    done: rows.map((r) => r[1]),
    status: rows.map((r) => r[2]),
    cpuMicros: 0,
  });

  it("times each 2xx answer in µs; answers after the duration count in the latencies, not the throughput", () => {
    const r = closedLoopRecord(
      samples([
        [0, 5_000, 200],
        [5_000, 6_000, 200],
        [6_000, 9_500, 204],
        [9_500, 11_500, 200],
      ]),
      1,
      10,
    );
    expect({ completed: r.completed, inDuration: r.answeredInDuration }).toEqual({
      completed: 4,
      inDuration: 3,
    });
    expect(r.latency.maxValue).toBe(5_000);
    expect(r.latency.getValueAtPercentile(50)).toBe(2_000);
    const summary = summarizeClosedLoop(r);
    expect(summary).toMatchObject({ rps: 300, requests: 4 });
    expect(summary.problem).toBeUndefined();
  });

  it("counts non-2xx answers, failed requests and those aborted at the drain deadline, and withholds the figures", () => {
    const r = closedLoopRecord(
      samples([
        [0, 1_000, 200],
        [0, 1_000, 503],
        [0, 2_000, 0],
        [1_000, 20_000, -1],
      ]),
      4,
      10,
    );
    expect({ completed: r.completed, non2xx: r.non2xx, errors: r.errors, unfinished: r.unfinished }).toEqual({
      completed: 1,
      non2xx: 1,
      errors: 1,
      unfinished: 1,
    });
    expect(r.latency.totalCount).toBe(1);
    expect(summarizeClosedLoop(r)).toMatchObject({
      requests: 4,
      problem: "1 errors, 1 non-2xx answers and 1 unanswered at the drain deadline",
    });
  });
});

describe("the summary of a closed-loop phase", () => {
  it("gives percentiles in ms with µs resolution, not whole ms", () => {
    const latency = microsHistogram();
    for (let i = 0; i < 990; i++) latency.recordValue(1_230);
    for (let i = 0; i < 10; i++) latency.recordValue(5_430);
    const r: ClosedLoopRecord = {
      connections: 50,
      durationMs: 2000,
      latency,
      completed: 1000,
      answeredInDuration: 990,
      non2xx: 0,
      errors: 0,
      unfinished: 0,
    };
    const s = summarizeClosedLoop(r);
    expect(s).toMatchObject({ rps: 495, p50: 1.23, p99: 1.23, max: 5.43, requests: 1000 });
    expect(s.p999).toBeCloseTo(5.43, 2);
    expect(s.problem).toBeUndefined();
  });
});

describe("paired differences of rounds", () => {
  it("gives each round's difference, their median and how many are within the slack", () => {
    expect(pairedDifferences([5.43, 6.1, 9, 4.2], [4.43, 5, 5, 4.5], 1)).toEqual({
      differences: [1, 1.1, 4, -0.3],
      median: 1.05,
      within: 2,
    });
    // 2.003 − 1.003 is 1.0000000000000002 in floating point: rounded to µs, it is within the slack.
    expect(2.003 - 1.003).toBeGreaterThan(1);
    expect(pairedDifferences([2.003], [1.003], 1)).toMatchObject({ differences: [1], within: 1 });
  });

  it("refuses rounds that do not pair", () => {
    expect(() => pairedDifferences([1, 2], [1], 1)).toThrow(/as many of each/);
  });
});
