import { afterEach, describe, expect, it, vi } from "vitest";
import { createWorkQueue, type WorkQueue } from "../../src/kube/queue.ts";

/** A promise with its resolve exposed, to hold a worker inside a key. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits (on real timers, even while fake ones are installed) until the queue reaches a state. */
async function until(condition: () => boolean): Promise<void> {
  await expect.poll(condition, { timeout: 5_000, interval: 1 }).toBe(true);
}

const noJitter = { baseMs: 100, maxMs: 1_000, factor: 2, jitter: 0 };
let queue: WorkQueue | undefined;

afterEach(async () => {
  vi.useRealTimers();
  await queue?.shutdown();
  queue = undefined;
});

describe("work queue", () => {
  it("processes a key added many times before a worker picks it once", async () => {
    queue = createWorkQueue();
    for (let i = 0; i < 5; i++) queue.add("ns/a");
    queue.add("ns/b");
    expect(queue.length()).toBe(2);
    const seen: string[] = [];
    queue.run(async (key) => {
      seen.push(key);
    }, 2);
    await until(() => seen.length === 2 && queue?.processing() === 0);
    expect(seen.sort()).toEqual(["ns/a", "ns/b"]);
  });

  it("runs a key added during its processing exactly once more, after the current run", async () => {
    // Fake timers: running every pending timer below shows no further run is scheduled, without a sleep.
    vi.useFakeTimers();
    queue = createWorkQueue();
    const first = gate();
    let running = 0;
    let maxRunning = 0;
    const runs: number[] = [];
    queue.run(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs.push(runs.length);
      if (runs.length === 1) await first.promise;
      running--;
    }, 4);
    queue.add("k");
    await until(() => runs.length === 1);
    // Three adds while the key is in flight collapse into one more run.
    queue.add("k");
    queue.add("k");
    queue.add("k");
    expect(queue.length()).toBe(0);
    first.open();
    await until(() => runs.length === 2 && queue?.processing() === 0);
    await vi.runAllTimersAsync();
    expect(runs).toHaveLength(2);
    expect(maxRunning).toBe(1);
  });

  it("never runs more workers than the concurrency", async () => {
    queue = createWorkQueue();
    let running = 0;
    let maxRunning = 0;
    let finished = 0;
    queue.run(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 2));
      running--;
      finished++;
    }, 3);
    for (let i = 0; i < 30; i++) queue.add(`key-${i}`);
    await until(() => finished === 30);
    expect(maxRunning).toBe(3);
  });

  it("backs off a failing key exponentially and forgets the count on success", async () => {
    vi.useFakeTimers();
    const q = createWorkQueue({ backoff: noJitter });
    queue = q;
    const calls: number[] = [];
    let failUntil = 3;
    q.run(async () => {
      calls.push(Date.now());
      if (calls.length <= failUntil) throw new Error("boom");
    }, 1);
    q.add("k");
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(1);
    expect(q.numRequeues("k")).toBe(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(400);
    expect(calls).toHaveLength(4);
    // The fourth run succeeded: the failure count is gone, so the next failure starts at the base again.
    expect(q.numRequeues("k")).toBe(0);
    failUntil = 5;
    q.add("k");
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(5);
    expect(q.numRequeues("k")).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toHaveLength(6);
  });

  it("forget resets the backoff of a key", () => {
    queue = createWorkQueue({ backoff: noJitter });
    queue.addRateLimited("k");
    queue.addRateLimited("k");
    expect(queue.numRequeues("k")).toBe(2);
    queue.forget("k");
    expect(queue.numRequeues("k")).toBe(0);
  });

  it("keeps the earliest of several delayed adds for one key", async () => {
    vi.useFakeTimers();
    const q = createWorkQueue();
    queue = q;
    const seen: number[] = [];
    q.run(async () => {
      seen.push(Date.now());
    }, 1);
    const start = Date.now();
    q.addAfter("k", 5_000);
    q.addAfter("k", 1_000);
    q.addAfter("k", 9_000);
    await vi.advanceTimersByTimeAsync(999);
    expect(seen).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual([start + 1_000]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(seen).toHaveLength(1);
  });

  it("honours requeueAfterMs and requeue from the worker", async () => {
    vi.useFakeTimers();
    const q = createWorkQueue({ backoff: noJitter });
    queue = q;
    const seen: string[] = [];
    q.run(async (key) => {
      seen.push(key);
      if (key === "later" && seen.filter((k) => k === "later").length === 1) return { requeueAfterMs: 3_000 };
      if (key === "retry" && seen.filter((k) => k === "retry").length === 1) return { requeue: true };
      return undefined;
    }, 1);
    q.add("later");
    q.add("retry");
    await vi.advanceTimersByTimeAsync(0);
    expect(seen).toEqual(["later", "retry"]);
    expect(q.numRequeues("retry")).toBe(1);
    expect(q.numRequeues("later")).toBe(0);
    await vi.advanceTimersByTimeAsync(100);
    expect(seen).toEqual(["later", "retry", "retry"]);
    await vi.advanceTimersByTimeAsync(2_900);
    expect(seen).toEqual(["later", "retry", "retry", "later"]);
  });

  it("shuts down cleanly: waits for running work, drops waiting and delayed keys, ignores later adds", async () => {
    // Fake timers: running every pending timer (the delayed add included) replaces sleeping and hoping.
    vi.useFakeTimers();
    const q = createWorkQueue();
    queue = q;
    const hold = gate();
    const seen: string[] = [];
    let finished = false;
    q.run(async (key) => {
      seen.push(key);
      await hold.promise;
      finished = true;
    }, 1);
    q.add("a");
    q.add("b");
    q.addAfter("c", 10);
    await until(() => seen.length === 1);
    const stopped = q.shutdown();
    let resolved = false;
    void stopped.then(() => {
      resolved = true;
    });
    await vi.runAllTimersAsync();
    expect(resolved).toBe(false);
    hold.open();
    await stopped;
    expect(finished).toBe(true);
    q.add("d");
    await vi.runAllTimersAsync();
    expect(seen).toEqual(["a"]);
    expect(q.length()).toBe(0);
    expect(q.isShuttingDown()).toBe(true);
  });

  it("refuses a bad concurrency and a second run", () => {
    queue = createWorkQueue();
    expect(() => queue?.run(async () => {}, 0)).toThrow(/concurrency/);
    queue.run(async () => {}, 1);
    expect(() => queue?.run(async () => {}, 1)).toThrow(/already running/);
  });

  it("keeps processing other keys while one key fails", async () => {
    const errors: string[] = [];
    queue = createWorkQueue({
      backoff: { ...noJitter, baseMs: 60_000, maxMs: 60_000 },
      onError: (k) => errors.push(k),
    });
    const ok: string[] = [];
    queue.run(async (key) => {
      if (key === "bad") throw new Error("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl leaked?");
      ok.push(key);
    }, 1);
    queue.add("bad");
    queue.add("good");
    await until(() => ok.length === 1 && errors.length === 1);
    expect(ok).toEqual(["good"]);
    expect(queue.numRequeues("bad")).toBe(1);
  });
});
