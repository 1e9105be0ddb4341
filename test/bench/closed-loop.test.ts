import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type ClosedLoopRecord,
  pairedDifferences,
  runClosedLoop,
  summarizeClosedLoop,
} from "../../bench/closed-loop.ts";
import { microsHistogram, type Send } from "../../bench/fixed-rate.ts";

describe("runClosedLoop (fake clock)", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const noAbort = async () => {};
  const answerIn = <T>(ms: number, value: T) =>
    new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

  /** Runs a loop on the fake clock (drain 1 s, nothing to abort unless given) until `advanceMs` have passed. */
  async function loop(
    send: Send,
    options: { connections: number; durationMs: number; drainMs?: number; abortAll?: () => Promise<void> },
    advanceMs = 100,
  ): Promise<ClosedLoopRecord> {
    const run = runClosedLoop({
      send,
      drainMs: 1000,
      abortAll: noAbort,
      ...options,
      now: () => Date.now(),
    });
    await vi.advanceTimersByTimeAsync(advanceMs);
    return run;
  }

  it("sends each connection's next request as soon as its answer arrives, and times each one in µs", async () => {
    // One connection; the first answer takes 5 ms, the others 1 ms.
    const sentAt: number[] = [];
    const send: Send = () => {
      sentAt.push(Date.now() - start);
      return answerIn(sentAt.length === 1 ? 5 : 1, 200);
    };
    const start = Date.now();
    const r = await loop(send, { connections: 1, durationMs: 10 });
    expect(sentAt).toEqual([0, 5, 6, 7, 8, 9]);
    expect({ completed: r.completed, inDuration: r.answeredInDuration }).toEqual({
      completed: 6,
      inDuration: 6,
    });
    expect(r.latency.maxValue).toBe(5000);
    expect(r.latency.getValueAtPercentile(50)).toBe(1000);
    expect(summarizeClosedLoop(r)).toMatchObject({ rps: 600, requests: 6, max: 5 });
  });

  it("keeps exactly `connections` requests in flight", async () => {
    let inFlight = 0;
    let most = 0;
    let sends = 0;
    const send: Send = async () => {
      sends++;
      inFlight++;
      most = Math.max(most, inFlight);
      const status = await answerIn(3, 200);
      inFlight--;
      return status;
    };
    const r = await loop(send, { connections: 50, durationMs: 30 });
    expect(most).toBe(50);
    // Sends at 0, 3, ..., 27 ms on each connection.
    expect(sends).toBe(500);
    expect(r.completed).toBe(500);
    expect(summarizeClosedLoop(r).rps).toBeCloseTo(500 / 0.03, 6);
  });

  it("sends nothing after the duration; answers after it count in the latencies, not the throughput", async () => {
    const sentAt: number[] = [];
    const send: Send = () => {
      sentAt.push(Date.now() - start);
      return answerIn(4, 200);
    };
    const start = Date.now();
    const r = await loop(send, { connections: 1, durationMs: 10 });
    expect(sentAt).toEqual([0, 4, 8]);
    expect({ completed: r.completed, inDuration: r.answeredInDuration }).toEqual({
      completed: 3,
      inDuration: 2,
    });
    expect(r.latency.totalCount).toBe(3);
    expect(summarizeClosedLoop(r).rps).toBe(200);
  });

  it("counts non-2xx answers and errors; a connection that failed sends no more", async () => {
    let n = 0;
    const send: Send = () => {
      n++;
      if (n === 1) return Promise.reject(new Error("connection reset"));
      if (n === 2) return answerIn(1, 503);
      return answerIn(1, 200);
    };
    const r = await loop(send, { connections: 2, durationMs: 10 });
    // The second connection alone: a 503 at 0 ms, then 200s sent at 1..9 ms.
    expect({ errors: r.errors, non2xx: r.non2xx, completed: r.completed }).toEqual({
      errors: 1,
      non2xx: 1,
      completed: 9,
    });
    expect(summarizeClosedLoop(r)).toMatchObject({
      requests: 11,
      problem: "1 errors, 1 non-2xx answers and 0 unanswered at the drain deadline",
    });
  });

  it("aborts what is still unanswered at the drain deadline, and withholds the figures", async () => {
    const hanging: ((error: Error) => void)[] = [];
    let n = 0;
    const send: Send = () => {
      n++;
      if (n <= 3) return answerIn(2, 200);
      return new Promise((_, reject) => hanging.push(reject));
    };
    const abortedAt: number[] = [];
    const start = Date.now();
    const abortAll = async () => {
      abortedAt.push(Date.now() - start);
      for (const reject of hanging) reject(new Error("destroyed"));
    };
    const r = await loop(send, { connections: 1, durationMs: 20, drainMs: 50, abortAll }, 200);
    expect(abortedAt).toEqual([70]);
    expect({ completed: r.completed, unfinished: r.unfinished, errors: r.errors }).toEqual({
      completed: 3,
      unfinished: 1,
      errors: 0,
    });
    expect(summarizeClosedLoop(r).problem).toBe(
      "0 errors, 0 non-2xx answers and 1 unanswered at the drain deadline",
    );
  });

  it("refuses a number of connections or a duration that is not positive", async () => {
    const send: Send = () => answerIn(1, 200);
    for (const connections of [0, -1, 1.5, Number.NaN]) {
      await expect(
        runClosedLoop({ connections, durationMs: 10, send, drainMs: 10, abortAll: noAbort }),
      ).rejects.toThrow(/positive whole number of connections/);
    }
    for (const durationMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(
        runClosedLoop({ connections: 1, durationMs, send, drainMs: 10, abortAll: noAbort }),
      ).rejects.toThrow(/positive duration/);
    }
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
