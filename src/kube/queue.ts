import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { type BackoffPolicy, backoffDelay, type Random, validatePolicy } from "./backoff.ts";

/**
 * A controller work queue with client-go's semantics:
 * - a key waits in the queue at most once, however often it is added (de-duplication);
 * - a key is never processed by two workers at once; a key added while it is being processed is
 *   processed once more after the current run finishes;
 * - failures back off exponentially with jitter per key until `forget`;
 * - delayed adds keep the earliest pending time per key.
 */

export interface WorkResult {
  /** Process the key again after this many ms (the failure count is reset, as on success). */
  requeueAfterMs?: number;
  /** Process the key again with the per-key backoff (the failure count grows, as on an error). */
  requeue?: boolean;
}

// biome-ignore lint/suspicious/noConfusingVoidType: lets plain `async (key) => { ... }` workers type-check.
export type Worker = (key: string) => Promise<WorkResult | undefined | void>;

export interface WorkQueueOptions {
  /** Per-key failure backoff; default 500 ms doubling to 5 min with ±20% jitter. */
  backoff?: BackoffPolicy;
  logger?: Logger;
  random?: Random;
  /** Called when a worker throws, after the key was re-queued with backoff (for a metric). */
  onError?: (key: string, error: unknown) => void;
}

export interface WorkQueue {
  add(key: string): void;
  addAfter(key: string, ms: number): void;
  /** Re-adds the key after its next backoff delay and counts one more failure. */
  addRateLimited(key: string): void;
  /** Resets the key's failure count (call after a success). */
  forget(key: string): void;
  numRequeues(key: string): number;
  /**
   * Starts `concurrency` workers. A worker that resolves forgets the key's failures; one that throws
   * re-queues the key with backoff; a returned WorkResult can ask for a later run.
   */
  run(worker: Worker, concurrency: number): void;
  /** Stops taking keys, cancels delayed adds and resolves once running workers have finished. */
  shutdown(): Promise<void>;
  isShuttingDown(): boolean;
  /** Keys waiting to be processed (not counting delayed adds or keys being processed). */
  length(): number;
  /** Keys being processed right now. */
  processing(): number;
}

export const DEFAULT_QUEUE_BACKOFF: BackoffPolicy = {
  baseMs: 500,
  maxMs: 5 * 60_000,
  factor: 2,
  jitter: 0.2,
};

export function createWorkQueue(options: WorkQueueOptions = {}): WorkQueue {
  const policy = validatePolicy(options.backoff ?? DEFAULT_QUEUE_BACKOFF);
  const random = options.random ?? Math.random;
  const queue: string[] = [];
  const dirty = new Set<string>();
  const active = new Set<string>();
  const failures = new Map<string, number>();
  const delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  let shuttingDown = false;
  let started = false;
  const waiters: Array<() => void> = [];
  const workers: Promise<void>[] = [];

  function wakeOne(): void {
    waiters.shift()?.();
  }

  function add(key: string): void {
    if (shuttingDown || dirty.has(key)) return;
    dirty.add(key);
    // A key being processed is queued again by done(), so it never runs twice at once.
    if (active.has(key)) return;
    queue.push(key);
    wakeOne();
  }

  function addAfter(key: string, ms: number): void {
    if (shuttingDown) return;
    if (!(ms > 0)) {
      add(key);
      return;
    }
    const at = Date.now() + ms;
    const pending = delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      delayed.delete(key);
      add(key);
    }, ms);
    // A pending retry must not keep a stopping process alive.
    timer.unref();
    delayed.set(key, { at, timer });
  }

  function addRateLimited(key: string): void {
    const attempt = (failures.get(key) ?? 0) + 1;
    failures.set(key, attempt);
    addAfter(key, backoffDelay(attempt, policy, random));
  }

  function done(key: string): void {
    active.delete(key);
    if (dirty.has(key) && !shuttingDown) {
      queue.push(key);
      wakeOne();
    }
  }

  async function next(): Promise<string | undefined> {
    while (queue.length === 0) {
      if (shuttingDown) return undefined;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
    if (shuttingDown) return undefined;
    const key = queue.shift() as string;
    dirty.delete(key);
    active.add(key);
    return key;
  }

  async function loop(worker: Worker): Promise<void> {
    for (;;) {
      const key = await next();
      if (key === undefined) return;
      try {
        const result = await worker(key);
        if (result?.requeue) {
          addRateLimited(key);
        } else {
          failures.delete(key);
          if (result?.requeueAfterMs !== undefined) addAfter(key, result.requeueAfterMs);
        }
      } catch (error) {
        addRateLimited(key);
        const message = scrubTokens(error instanceof Error ? error.message : String(error));
        options.logger?.warn(
          { key, attempt: failures.get(key), err: message },
          "work item failed; retrying with backoff",
        );
        options.onError?.(key, error);
      } finally {
        done(key);
      }
    }
  }

  return {
    add,
    addAfter,
    addRateLimited,
    forget(key) {
      failures.delete(key);
    },
    numRequeues(key) {
      return failures.get(key) ?? 0;
    },
    run(worker, concurrency) {
      if (!Number.isInteger(concurrency) || concurrency < 1) {
        throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
      }
      if (started) throw new Error("work queue is already running");
      started = true;
      for (let i = 0; i < concurrency; i++) workers.push(loop(worker));
    },
    async shutdown() {
      shuttingDown = true;
      for (const { timer } of delayed.values()) clearTimeout(timer);
      delayed.clear();
      queue.length = 0;
      dirty.clear();
      while (waiters.length > 0) wakeOne();
      await Promise.all(workers);
    },
    isShuttingDown() {
      return shuttingDown;
    },
    length() {
      return queue.length;
    },
    processing() {
      return active.size;
    },
  };
}
