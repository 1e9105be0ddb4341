import { describe, expect, it } from "vitest";
import { backoffDelay, createBackoff, jittered, sleep, validatePolicy } from "../../src/kube/backoff.ts";

const policy = { baseMs: 100, maxMs: 1000, factor: 2, jitter: 0.2 };
const middle = () => 0.5;

describe("backoffDelay", () => {
  it("grows by the factor and stops at the ceiling (no jitter at the midpoint)", () => {
    const delays = [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, middle));
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it("spreads the delay over ±jitter around the un-jittered value", () => {
    expect(backoffDelay(2, policy, () => 0)).toBe(160);
    expect(backoffDelay(2, policy, () => 1)).toBe(240);
    // The ceiling is applied before the jitter, so retries at the ceiling still spread out.
    expect(backoffDelay(10, policy, () => 1)).toBe(1200);
    expect(backoffDelay(10, policy, () => 0)).toBe(800);
  });

  it("stays finite for very long failure streaks", () => {
    expect(backoffDelay(10_000, { ...policy, maxMs: 5_000 }, middle)).toBe(5_000);
  });

  it("refuses attempt numbers below 1", () => {
    expect(() => backoffDelay(0, policy, middle)).toThrow(/attempt/);
    expect(() => backoffDelay(1.5, policy, middle)).toThrow(/attempt/);
  });
});

describe("jittered", () => {
  it("clamps a misbehaving random source into range", () => {
    expect(jittered(100, 0.5, () => 7)).toBe(150);
    expect(jittered(100, 0.5, () => -3)).toBe(50);
  });

  it("returns the value unchanged with zero jitter", () => {
    expect(jittered(1234, 0, Math.random)).toBe(1234);
  });
});

describe("validatePolicy", () => {
  it.each([
    [{ ...policy, baseMs: -1 }, /baseMs/],
    [{ ...policy, maxMs: 10 }, /maxMs/],
    [{ ...policy, factor: 0.5 }, /factor/],
    [{ ...policy, jitter: 2 }, /jitter/],
    [{ ...policy, baseMs: Number.NaN }, /baseMs/],
  ])("rejects %o", (bad, message) => {
    expect(() => validatePolicy(bad)).toThrow(message);
  });
});

describe("createBackoff", () => {
  it("counts attempts and starts over after reset", () => {
    const backoff = createBackoff(policy, middle);
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([100, 200, 400]);
    expect(backoff.attempts()).toBe(3);
    backoff.reset();
    expect(backoff.attempts()).toBe(0);
    expect(backoff.next()).toBe(100);
  });
});

describe("sleep", () => {
  it("returns at once when the signal aborts", async () => {
    const controller = new AbortController();
    const done = sleep(60_000, controller.signal).then(() => "woke");
    controller.abort();
    await expect(done).resolves.toBe("woke");
  });

  it("returns at once for an already aborted signal", async () => {
    await expect(sleep(60_000, AbortSignal.abort())).resolves.toBeUndefined();
  });
});
