import type { Registry } from "prom-client";
import { API_VERSION, type BLUEPRINT_KIND, KIND } from "../api/constants.ts";
import type { KubeClient } from "../kube/client.ts";
import { createEventRecorder, type EventRecorder } from "../kube/events.ts";
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
}

/**
 * Events about AgentIdentities through the kube toolkit's recorder (de-duplicated, rate-limited per object,
 * similar ones combined, scrubbed of tokens and secrets, best effort: a failed or dropped event never fails a
 * reconcile).
 */
export function createEventSink(
  kubeConfig: KubeConfigLike,
  client: KubeClient,
  logger: Logger,
  instance: string,
  registry?: Registry,
): EventSink {
  // The recorder's default limits: at most 4 writes in flight, a burst of 1,000 identities queues behind them.
  const recorder: EventRecorder = createEventRecorder({
    kubeConfig,
    client,
    component: "agentid-manager",
    instance,
    logger,
    ...(registry ? { registry } : {}),
  });
  return {
    async emit(e) {
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
    flush: () => recorder.flush(),
  };
}
