import type { Registry } from "prom-client";
import { API_VERSION, type BLUEPRINT_KIND, KIND } from "../api/constants.ts";
import type { KubeClient } from "../kube/client.ts";
import { createEventRecorder, droppedEventsCounter, type EventRecorder } from "../kube/events.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";

/** Where the reconciler reports transitions; behind an interface so the decisions stay testable. */
export interface EventSink {
  emit(event: {
    /** Empty for a cluster-scoped object (an AgentIdentityBlueprint). */
    namespace: string;
    name: string;
    /** The object's kind; AgentIdentity when absent. */
    kind?: typeof BLUEPRINT_KIND;
    uid?: string;
    type: "Normal" | "Warning";
    reason: string;
    message: string;
  }): Promise<void>;
  flush(): Promise<void>;
  /**
   * Ends the current leadership term's recorder: what waits is dropped (its writes would only fail on the
   * fenced client), counted as `shutdown` with one log line, and every event until `open()` is dropped too.
   */
  close(): Promise<void>;
  /**
   * Starts the recorder of a leadership term (ending the previous one, if any): when `term` aborts, what
   * waits is dropped at once. The sink is open (without a term) when made.
   */
  open(term?: AbortSignal): void;
}

/**
 * Events about AgentIdentities through the kube toolkit's recorder (de-duplicated, rate-limited per object
 * and reason, similar ones combined, scrubbed of tokens and secrets, best effort: a failed or dropped event
 * never fails a reconcile). One recorder per leadership term: its writes go through the fenced client, so
 * what is still waiting when the term ends could never be written.
 */
export function createEventSink(
  kubeConfig: KubeConfigLike,
  client: KubeClient,
  logger: Logger,
  instance: string,
  registry?: Registry,
): EventSink {
  const component = "agentid-manager";
  // The recorder's default limits: at most 4 writes in flight, a burst of 1,000 identities queues behind them.
  const open = (term?: AbortSignal): EventRecorder =>
    createEventRecorder({
      kubeConfig,
      client,
      component,
      instance,
      logger,
      ...(registry ? { registry } : {}),
      ...(term ? { signal: term } : {}),
    });
  let recorder: EventRecorder | undefined = open();
  const dropped = registry ? droppedEventsCounter(registry) : undefined;
  return {
    async emit(e) {
      if (!recorder) {
        // Between terms (a worker still draining): the fenced client would refuse the write anyway.
        dropped?.inc({ component, reason: "shutdown" });
        return;
      }
      recorder.record(
        {
          apiVersion: API_VERSION,
          kind: e.kind ?? KIND,
          metadata: {
            name: e.name,
            ...(e.namespace ? { namespace: e.namespace } : {}),
            ...(e.uid ? { uid: e.uid } : {}),
          },
        },
        e.type,
        e.reason,
        e.message,
      );
    },
    flush: () => recorder?.flush() ?? Promise.resolve(),
    async close() {
      const ending = recorder;
      recorder = undefined;
      await ending?.close();
    },
    open(term) {
      const previous = recorder;
      recorder = open(term);
      void previous?.close();
    },
  };
}
