import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { requestDeadline } from "../../src/kube/deadline.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("requestDeadline", () => {
  it("aborts with a TimeoutError once the timeout passes", () => {
    const deadline = requestDeadline(undefined, 1000);
    vi.advanceTimersByTime(999);
    expect(deadline.signal?.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(deadline.signal?.aborted).toBe(true);
    expect(deadline.signal?.reason).toMatchObject({ name: "TimeoutError" });
  });

  it("leaves no timer behind when the request ends in time", () => {
    const deadline = requestDeadline(undefined, 1000);
    expect(vi.getTimerCount()).toBe(1);
    deadline.done();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(deadline.signal?.aborted).toBe(false);
  });

  it("follows the caller's signal with the caller's reason while the request runs", () => {
    const term = new AbortController();
    const deadline = requestDeadline(term.signal, 1000);
    const reason = new DOMException("term over", "AbortError");
    term.abort(reason);
    expect(deadline.signal?.aborted).toBe(true);
    expect(deadline.signal?.reason).toBe(reason);
  });

  it("starts aborted when the caller's signal already is", () => {
    const term = new AbortController();
    term.abort();
    expect(requestDeadline(term.signal, 1000).signal?.aborted).toBe(true);
  });

  it("stops following the caller's signal once done", () => {
    const term = new AbortController();
    const deadline = requestDeadline(term.signal, 1000);
    deadline.done();
    term.abort();
    expect(deadline.signal?.aborted).toBe(false);
  });

  it("hands the caller's signal through untouched without a timeout (watches)", () => {
    const term = new AbortController();
    expect(requestDeadline(term.signal, undefined).signal).toBe(term.signal);
    expect(requestDeadline(undefined, undefined).signal).toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
  });
});
