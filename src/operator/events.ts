import { randomBytes } from "node:crypto";
import type { KubeClient } from "../kube/client.ts";
import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";

/** Where the reconciler reports transitions; I/O kept behind an interface so decisions stay testable. */
export interface EventSink {
  emit(event: {
    namespace: string;
    name: string;
    uid?: string;
    type: "Normal" | "Warning";
    reason: string;
    message: string;
  }): Promise<void>;
}

/**
 * Writes core/v1 Events for AgentIdentities. Failures are logged, never thrown: an event is a notice and
 * must not fail or repeat a reconcile. Messages are scrubbed of anything token-shaped on the way out.
 */
export function createEventSink(kube: KubeClient, logger: Logger, component = "agentid-operator"): EventSink {
  return {
    async emit(e) {
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      const body = {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: `${e.name}.${randomBytes(8).toString("hex")}`, namespace: e.namespace },
        involvedObject: {
          apiVersion: "agentid.io/v1alpha1",
          kind: "AgentIdentity",
          name: e.name,
          namespace: e.namespace,
          ...(e.uid ? { uid: e.uid } : {}),
        },
        type: e.type,
        reason: e.reason,
        message: scrubTokens(e.message).slice(0, 1024),
        source: { component },
        reportingComponent: component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      try {
        await kube.create(`/api/v1/namespaces/${encodeURIComponent(e.namespace)}/events`, body);
      } catch (error) {
        logger.warn(
          {
            namespace: e.namespace,
            name: e.name,
            reason: e.reason,
            err: scrubTokens((error as Error).message),
          },
          "could not record event",
        );
      }
    },
  };
}
