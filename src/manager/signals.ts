import type { Logger } from "../lib/log.ts";

/** The part of `process` the stop-on-signal logic uses (tests hand it a plain EventEmitter). */
export interface SignalSource {
  on(signal: "SIGTERM" | "SIGINT", listener: (signal: NodeJS.Signals) => void): unknown;
}

export interface StopOnSignalsOptions {
  signals: SignalSource;
  /** Stops the manager (steps down, drains, releases the Lease, closes). */
  stop(): Promise<void>;
  logger: Logger;
  /** As given on the command line, for the log lines. */
  gracePeriod: string;
  graceMs: number;
  /** What stopping still waits for, for the line logged when the grace period ends. */
  pending(): string;
  /** Ends the process at once (process.exit); called only when the grace period ends. */
  exit(code: number): void;
}

/**
 * Waits for SIGTERM or SIGINT, then stops the manager; resolves with the exit code: 0 when stopping
 * finished, 1 when it failed. When it outlasts the grace period, `exit(1)` is called instead.
 *
 * The handlers stay installed after the first signal: a second SIGTERM (or a second Ctrl-C) only logs
 * `already stopping`, so it cannot kill the process halfway through releasing the Lease (Node's default
 * for an unhandled SIGTERM is to exit at once). The grace period is what bounds a stop; SIGKILL remains
 * the way to end it sooner.
 */
export function stopOnSignals(options: StopOnSignalsOptions): Promise<number> {
  const { logger, gracePeriod } = options;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn(
          { signal, gracePeriod },
          "already stopping; the shutdown grace period bounds it (a second signal does not interrupt it)",
        );
        return;
      }
      stopping = true;
      logger.info({ signal, gracePeriod }, "stopping: releasing the lease");
      const deadline = setTimeout(() => {
        logger.error(
          { gracePeriod, pending: options.pending() },
          `shutdown grace period of ${gracePeriod} ended with work still pending; exiting with code 1`,
        );
        logger.flush();
        options.exit(1);
      }, options.graceMs);
      options.stop().then(
        () => {
          // Everything the manager knows of has stopped: the process now ends when its last handle
          // closes. The deadline stays armed but no longer holds the process open, so a handle nobody
          // closed (a socket, a timer) still cannot keep it alive beyond the grace period.
          deadline.unref();
          resolve(0);
        },
        (error: unknown) => {
          deadline.unref();
          logger.error({ err: String(error) }, "stopping failed; exiting with code 1");
          resolve(1);
        },
      );
    };
    options.signals.on("SIGTERM", onSignal);
    options.signals.on("SIGINT", onSignal);
  });
}
