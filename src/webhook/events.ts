import type { Registry } from "prom-client";
import { API_VERSION, KIND } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { BucketLimit } from "../kube/event-limits.ts";
import { createEventRecorder, type EventRecorder } from "../kube/events.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";
import type { Refusal } from "./refusals.ts";

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

/**
 * The Event of a refusal on the AgentIdentity it concerns: `PodRefused` for pods, the guard's reasons for
 * the rest. The messages quote pod fields only through src/lib/text.ts (bounded, no control characters),
 * and the recorder sanitises the whole text again (src/kube/events.ts, sanitizeEventMessage).
 */
export function recordRefusalEvent(
  events: Pick<EventRecorder, "record"> | undefined,
  identity: AgentIdentity,
  refusals: readonly Refusal[],
  reason: string,
): void {
  const what = reason === "PodRefused" ? "a pod was refused" : "a request was refused";
  events?.record(
    { apiVersion: API_VERSION, kind: KIND, metadata: identity.metadata },
    "Warning",
    reason,
    `${what}: ${refusals.map((r) => r.message).join("; ")}`,
  );
}
