import { EventEmitter } from "node:events";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../src/lib/log.ts";
import { stopOnSignals } from "../../src/manager/signals.ts";

/** Log lines as objects, from a logger writing synchronously into memory. */
function capture() {
  const lines: Array<{ msg?: string; signal?: string; pending?: string }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, logger: createLogger({ name: "signals-test", destination }) };
}

/** A stop that finishes when the test says so. */
function controlledStop() {
  let finish: (error?: Error) => void = () => {};
  let calls = 0;
  const stop = () => {
    calls += 1;
    return new Promise<void>((resolve, reject) => {
      finish = (error) => (error ? reject(error) : resolve());
    });
  };
  return { stop, calls: () => calls, finish: (error?: Error) => finish(error) };
}

/** `stopOnSignals` over an emitter, a logger in memory, a stop the test finishes and an exit it watches. */
function stopping(pending = "") {
  const { lines, logger } = capture();
  const signals = new EventEmitter();
  const s = controlledStop();
  const exit = vi.fn();
  const code = stopOnSignals({
    signals,
    stop: s.stop,
    logger,
    gracePeriod: "20s",
    graceMs: 20_000,
    pending: () => pending,
    exit,
  });
  return { lines, signals, s, exit, code };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("stopping the manager on SIGTERM/SIGINT", () => {
  it("exits 0 when stopping finished", async () => {
    const { lines, signals, s, exit, code } = stopping();
    signals.emit("SIGTERM", "SIGTERM");
    s.finish();
    expect(await code).toBe(0);
    expect(exit).not.toHaveBeenCalled();
    expect(lines.map((l) => l.msg)).toEqual(["stopping: releasing the lease"]);
  });

  it("exits 1 when stopping failed (not 0 after 'stopping failed')", async () => {
    const { lines, signals, s, exit, code } = stopping();
    signals.emit("SIGINT", "SIGINT");
    s.finish(new Error("the API client could not be closed"));
    expect(await code).toBe(1);
    expect(lines.at(-1)?.msg).toBe("stopping failed; exiting with code 1");
    expect(exit).not.toHaveBeenCalled();
  });

  it("a second SIGTERM or SIGINT while stopping only logs 'already stopping': one stop, still running", async () => {
    const { lines, signals, s, exit, code } = stopping();
    signals.emit("SIGTERM", "SIGTERM");
    signals.emit("SIGTERM", "SIGTERM");
    signals.emit("SIGINT", "SIGINT");
    // Still handled: Node would otherwise end the process at once on a signal nobody listens to.
    expect(signals.listenerCount("SIGTERM")).toBe(1);
    expect(signals.listenerCount("SIGINT")).toBe(1);
    expect(s.calls()).toBe(1);
    const again = lines.filter((l) => l.msg?.startsWith("already stopping"));
    expect(again.map((l) => l.signal)).toEqual(["SIGTERM", "SIGINT"]);
    s.finish();
    expect(await code).toBe(0);
    expect(exit).not.toHaveBeenCalled();
  });

  it("exits 1 with one line naming what is pending when the grace period ends first", async () => {
    vi.useFakeTimers();
    const { lines, signals, exit } = stopping("stepping down and releasing the lease");
    signals.emit("SIGTERM", "SIGTERM");
    await vi.advanceTimersByTimeAsync(19_999);
    expect(exit).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(exit).toHaveBeenCalledExactlyOnceWith(1);
    const ended = lines.filter((l) => /grace period of 20s ended/.test(l.msg ?? ""));
    expect(ended).toHaveLength(1);
    expect(ended[0]?.pending).toBe("stepping down and releasing the lease");
  });
});
