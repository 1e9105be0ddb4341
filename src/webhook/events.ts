import type { Registry } from "prom-client";
import type { KubeClient } from "../kube/client.ts";
import type { BucketLimit } from "../kube/event-limits.ts";
import { createEventRecorder, type EventRecorder } from "../kube/events.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";

/**
 * The recorder of the webhook's refusal Events (PodRefused, TokenRequestRefused, ...) on AgentIdentities.
 * What a namespace user sends decides what these say, so on top of the recorder's own limits (per object,
 * aggregation of varying messages, writes in flight) the webhook caps each namespace: more AgentIdentities
 * do not buy a user more Events.
 */
export const REFUSAL_NAMESPACE_LIMIT: BucketLimit = { burst: 50, refillMs: 60_000 };

export function createRefusalRecorder(options: {
  kubeConfig: KubeConfigLike;
  client: KubeClient;
  instance?: string;
  logger: Logger;
  registry?: Registry;
  now?: () => number;
}): EventRecorder {
  return createEventRecorder({
    kubeConfig: options.kubeConfig,
    client: options.client,
    component: "agentid-webhook",
    ...(options.instance ? { instance: options.instance } : {}),
    logger: options.logger,
    ...(options.registry ? { registry: options.registry } : {}),
    ...(options.now ? { now: options.now } : {}),
    limits: { perNamespace: REFUSAL_NAMESPACE_LIMIT },
  });
}
