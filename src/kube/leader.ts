import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { jittered, type Random, sleep } from "./backoff.ts";
import { createKubeClient, isConflict, type KubeClient } from "./client.ts";
import type { KubeConfigLike } from "./kubeconfig.ts";
import {
  decide,
  type LeaseObject,
  leaseBody,
  type Observation,
  observe,
  recordOf,
  releasedRecord,
} from "./lease.ts";

/**
 * Leader election on a coordination.k8s.io/v1 Lease with client-go's semantics: acquire when the Lease is
 * free or its holder has not renewed within its duration; renew every retry period; step down when no
 * renewal succeeded within the renew deadline (before anyone else may take over); on stop, release the
 * Lease by clearing the holder so another replica takes over at once. Writes use the resourceVersion of
 * the read, so two candidates can never both win the same round.
 *
 * Unlike client-go's ReleaseOnCancel (which releases as soon as the context ends and leaves it to the
 * caller to make sure the guarded work has ended), a stopping leader keeps renewing the Lease while its
 * work drains and releases it only afterwards: work the term cannot abort (a call to Entra or Graph in
 * flight) must not overlap with the next leader's. If the drain outlasts the process (the manager's
 * shutdown grace period), the Lease simply expires; nobody takes over before it does.
 */

export interface LeaderElectionOptions {
  kubeConfig: KubeConfigLike;
  client?: KubeClient;
  namespace: string;
  name: string;
  /** Unique per replica, e.g. the pod name plus a random suffix. */
  identity: string;
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  /**
   * Deadline of the release of the Lease on stop (default 2 s, at most the renew deadline). One attempt,
   * plus one retry within the same deadline when it met a conflict while the Lease still names this
   * replica (a renewal interrupted by the stop that had already reached the API server): a replica that
   * cannot reach the API server must still exit promptly, and an unreleased Lease only means the next
   * leader waits for it to expire.
   */
  releaseTimeoutMs?: number;
  logger: Logger;
  random?: Random;
  /** Clock for the lease rules (tests may pin it); defaults to Date.now. */
  now?: () => number;
}

export interface LeaderCallbacks {
  /** Start leader-only work; `signal` aborts when leadership ends. */
  onStartedLeading(signal: AbortSignal): void;
  /**
   * Stop leader-only work. On `stop()` the Lease is kept (renewed) until a returned promise settles and
   * released only then, however long that takes (the caller bounds the whole stop, e.g. the manager's
   * shutdown grace period), so work in flight ends before the next leader starts. After losing the
   * lease, the elector campaigns again only once a returned promise has settled, however long that takes:
   * work of the old term must not run beside the next term's work on this replica.
   */
  onStoppedLeading(): void | Promise<void>;
  /** Called whenever a different holder is observed (also our own identity once we win). */
  onNewLeader?(identity: string): void;
}

export interface LeaderElector {
  /** Starts campaigning. After losing the lease the elector campaigns again (onStartedLeading runs again on a win). */
  run(callbacks: LeaderCallbacks): void;
  isLeader(): boolean;
  /**
   * Stops campaigning; a leader aborts its signal, calls onStoppedLeading and keeps renewing the Lease
   * until that has settled, then releases the Lease (unless it was lost meanwhile).
   */
  stop(): Promise<void>;
}

export function validateElectionTimings(lease: number, renew: number, retry: number): void {
  if (!(retry > 0)) throw new RangeError(`retryPeriodSeconds must be > 0, got ${retry}`);
  if (!(renew > retry))
    throw new RangeError(
      `renewDeadlineSeconds (${renew}) must be greater than retryPeriodSeconds (${retry})`,
    );
  if (!(lease > renew))
    throw new RangeError(
      `leaseDurationSeconds (${lease}) must be greater than renewDeadlineSeconds (${renew})`,
    );
}

function describe(error: unknown): string {
  return scrubTokens(error instanceof Error ? error.message : String(error));
}

export function createLeaderElector(options: LeaderElectionOptions): LeaderElector {
  const leaseDuration = options.leaseDurationSeconds ?? 15;
  const renewDeadline = options.renewDeadlineSeconds ?? 10;
  const retryPeriod = options.retryPeriodSeconds ?? 2;
  validateElectionTimings(leaseDuration, renewDeadline, retryPeriod);
  const releaseTimeoutMs = Math.min(options.releaseTimeoutMs ?? 2_000, renewDeadline * 1000);
  if (!(releaseTimeoutMs > 0)) throw new RangeError(`releaseTimeoutMs must be > 0, got ${releaseTimeoutMs}`);
  if (!options.identity) throw new Error("leader election needs a non-empty identity");
  const { namespace, name, identity } = options;
  const log = options.logger.child({ lease: `${namespace}/${name}`, identity });
  const client = options.client ?? createKubeClient(options.kubeConfig);
  const ownsClient = options.client === undefined;
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  const leasePath = `${path}/${encodeURIComponent(name)}`;
  const stopController = new AbortController();
  let observation: Observation | undefined;
  let lastLease: LeaseObject | undefined;
  let leading: AbortController | undefined;
  let callbacks: LeaderCallbacks | undefined;
  let loopDone: Promise<void> | undefined;
  let reportedLeader = "";
  /** When the last successful renewal (or the acquisition) of the current term was sent. */
  let renewedAtMs = 0;

  function noteLeader(holder: string): void {
    if (holder && holder !== reportedLeader) {
      reportedLeader = holder;
      log.info({ leader: holder }, "new leader observed");
      try {
        callbacks?.onNewLeader?.(holder);
      } catch (error) {
        log.error({ err: describe(error) }, "onNewLeader threw");
      }
    }
  }

  /** One round of client-go's tryAcquireOrRenew; true when we hold the lease afterwards. */
  async function tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const current = await client
      .request<LeaseObject>("GET", leasePath, { signal })
      .catch((error: unknown) => {
        if ((error as { status?: number }).status === 404) return undefined;
        throw error;
      });
    const currentRecord = current ? recordOf(current) : undefined;
    const nowMs = now();
    const decision = decide({
      current: currentRecord,
      previous: observation,
      nowMs,
      identity,
      leaseDurationSeconds: leaseDuration,
    });
    if (currentRecord) observation = observe(observation, currentRecord, nowMs);
    if (decision.action === "wait") {
      noteLeader(decision.holder);
      return false;
    }
    try {
      const written =
        decision.action === "create"
          ? await client.request<LeaseObject>("POST", path, {
              body: leaseBody(namespace, name, decision.record),
              signal,
            })
          : await client.request<LeaseObject>("PUT", leasePath, {
              body: leaseBody(namespace, name, decision.record, current),
              signal,
            });
      lastLease = written;
      observation = { record: recordOf(written), observedAtMs: nowMs };
      noteLeader(identity);
      return true;
    } catch (error) {
      // Someone else wrote first (409 on update, or on create when the Lease appeared meanwhile).
      if (isConflict(error) || (error as { status?: number }).status === 409) return false;
      throw error;
    }
  }

  async function attempt(signal: AbortSignal): Promise<boolean> {
    try {
      return await tryAcquireOrRenew(signal);
    } catch (error) {
      if (!signal.aborted) log.warn({ err: describe(error) }, "lease request failed");
      return false;
    }
  }

  const retryDelay = () => jittered(retryPeriod * 1000, 0.1, random);

  async function lead(acquiredSentMs: number): Promise<void> {
    const controller = new AbortController();
    leading = controller;
    log.info("became leader");
    try {
      callbacks?.onStartedLeading(controller.signal);
    } catch (error) {
      log.error({ err: describe(error) }, "onStartedLeading threw");
    }
    renewedAtMs = acquiredSentMs;
    while (!stopController.signal.aborted) {
      await sleep(retryDelay(), stopController.signal);
      if (stopController.signal.aborted) return; // stop() takes over: it holds, then releases the lease
      const remaining = renewDeadline * 1000 - (now() - renewedAtMs);
      // Each renewal gets only the time left before the deadline, so a hung request cannot keep us leading.
      const deadline = AbortSignal.any([stopController.signal, AbortSignal.timeout(Math.max(1, remaining))]);
      // The deadline counts from when a renewal was sent, not answered: the write may have landed at any
      // point in between, and others start their expiry clock from when they see it.
      const sentMs = now();
      if (await attempt(deadline)) {
        renewedAtMs = sentMs;
        continue;
      }
      if (stopController.signal.aborted) return;
      if (
        now() - renewedAtMs >= renewDeadline * 1000 ||
        (observation && observation.record.holderIdentity !== identity)
      ) {
        log.warn("lost the lease; stepping down");
        await stepDown();
        return;
      }
    }
  }

  /**
   * The lease is lost: the term ends and the elector campaigns again only once the drain has settled. Not
   * bounded (it used to be, by the renew deadline): the drain may wait for an outbound call that cannot
   * be aborted (Entra/Graph, up to its 15 s deadline, or a token request with none), and the fences read
   * the current term, so campaigning sooner would let this replica win again (a single replica whose
   * Lease still names it wins at once) while the old term's worker is still finishing: its next write
   * would pass the new term's fence beside the new term's reconcile of the same key. Another replica may
   * take over meanwhile; this one just stays out of the election until its old term is over.
   */
  async function stepDown(): Promise<void> {
    const controller = leading;
    if (!controller) return;
    leading = undefined;
    controller.abort();
    try {
      await callbacks?.onStoppedLeading();
    } catch (error) {
      log.error({ err: describe(error) }, "onStoppedLeading threw");
    }
  }

  /**
   * Keeps renewing the Lease of a stopping leader until `until` aborts (its drain has ended). True when
   * the Lease is still held then; false when a renewal deadline passed or another holder was seen. A
   * renewal in flight when the drain ends is aborted rather than awaited (a silent API server must not
   * hold the stop): if its write landed anyway, the release meets a conflict and retries (release()).
   */
  async function holdWhile(until: AbortSignal): Promise<boolean> {
    for (;;) {
      await sleep(retryDelay(), until);
      if (until.aborted) return true;
      const remaining = renewDeadline * 1000 - (now() - renewedAtMs);
      const sentMs = now();
      if (await attempt(AbortSignal.any([until, AbortSignal.timeout(Math.max(1, remaining))]))) {
        renewedAtMs = sentMs;
        continue;
      }
      if (until.aborted) return true;
      if (now() - renewedAtMs >= renewDeadline * 1000 || observation?.record.holderIdentity !== identity) {
        log.warn("lost the lease while draining; it is not released");
        return false;
      }
    }
  }

  /**
   * stop() while leading: the term ends, the Lease is held until the drain has settled, then released.
   * The drain is not bounded here: whatever it waits for (an outbound call that cannot be aborted) must
   * not overlap with the next leader, and the process's own deadline bounds the stop.
   */
  async function stopLeading(): Promise<void> {
    const controller = leading;
    if (!controller) return;
    leading = undefined;
    controller.abort();
    const drained = new AbortController();
    const holding = holdWhile(drained.signal);
    try {
      await callbacks?.onStoppedLeading();
    } catch (error) {
      log.error({ err: describe(error) }, "onStoppedLeading threw");
    } finally {
      drained.abort();
    }
    if (await holding) await release();
  }

  async function loop(): Promise<void> {
    const stopSignal = stopController.signal;
    while (!stopSignal.aborted) {
      const sentMs = now();
      const won = await attempt(AbortSignal.any([stopSignal, AbortSignal.timeout(renewDeadline * 1000)]));
      if (stopSignal.aborted) break;
      if (won) {
        await lead(sentMs);
        continue;
      }
      await sleep(retryDelay(), stopSignal);
    }
  }

  async function release(): Promise<void> {
    const base = lastLease;
    if (!base) return;
    // One deadline for the release and its retry: a stopping replica must still exit promptly.
    const signal = AbortSignal.timeout(releaseTimeoutMs);
    const put = (lease: LeaseObject) =>
      client.request("PUT", leasePath, {
        body: leaseBody(namespace, name, releasedRecord(recordOf(lease), now()), lease),
        signal,
      });
    try {
      try {
        await put(base);
      } catch (error) {
        if (!isConflict(error)) throw error;
        // Our resourceVersion is out of date. Either someone else took the Lease over (nothing left to
        // release), or a renewal the stop interrupted had reached the API server after all: then the
        // Lease still names us, and one retry on the fresh object spares the next leader its expiry.
        const current = await client.request<LeaseObject>("GET", leasePath, { signal });
        if (recordOf(current).holderIdentity !== identity) {
          log.info({ holder: recordOf(current).holderIdentity }, "the lease was already taken over");
          return;
        }
        await put(current);
      }
      log.info("released the lease");
    } catch (error) {
      log.warn({ err: describe(error) }, "could not release the lease; it will expire instead");
    }
  }

  return {
    run(cb) {
      if (loopDone) throw new Error("leader elector is already running");
      if (stopController.signal.aborted) throw new Error("leader elector was stopped");
      callbacks = cb;
      loopDone = loop().catch((error: unknown) =>
        log.fatal({ err: describe(error) }, "leader election loop crashed"),
      );
    },
    isLeader: () => leading !== undefined,
    async stop() {
      if (stopController.signal.aborted) return;
      stopController.abort();
      await loopDone;
      await stopLeading();
      if (ownsClient) await client.close().catch(() => {});
    },
  };
}
