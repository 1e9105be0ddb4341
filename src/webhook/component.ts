import type { Registry } from "prom-client";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Informer, KubeObject } from "../kube/informer.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";
import type { SecretObject } from "./certificate-manager.ts";
import { createRefusalRecorder } from "./events.ts";
import {
  createWebhook,
  type NamespaceObject,
  WEBHOOK_CACHES,
  type Webhook,
  type WebhookOptions,
} from "./index.ts";
import { secretCache } from "./serving.ts";

/**
 * The webhook as two components of `agentid manager` (docs/manager.md): `webhook` serves admission
 * reviews on every replica; `webhook-certificates` keeps the serving certificate and the caBundle, on
 * the leader only, writing through the fenced client. Both share one webhook and the manager's caches.
 * The context and component shapes are the manager's (src/manager/component.ts), written structurally
 * here so the webhook does not import the manager.
 */

export interface WebhookContext {
  kubeConfig: KubeConfigLike;
  kube: KubeClient;
  leaderKube: KubeClient;
  caches: {
    informer<T extends KubeObject>(spec: {
      path: string;
      resource: string;
      labelSelector?: string;
      fieldSelector?: string;
    }): Informer<T>;
    hasSynced(): boolean;
  };
  logger: Logger;
  registry: Registry;
  replica: string;
}

export interface WebhookComponent {
  readonly name: string;
  readonly needsLeaderElection: boolean;
  start(signal: AbortSignal): Promise<void> | void;
  stop(): Promise<void>;
  ready(): boolean;
  close?(): Promise<void>;
}

export type WebhookSettings = Pick<
  WebhookOptions,
  "listen" | "sidecar" | "certificates" | "allowedAuthorityHosts"
>;

/** Two factories for `startManager({ components })`: call both, in this order, with the same context. */
export function webhookComponents(
  settings: WebhookSettings,
): Array<(ctx: WebhookContext) => WebhookComponent> {
  let webhook: Webhook | undefined;
  const serve = (ctx: WebhookContext): WebhookComponent => {
    const logger = ctx.logger.child({ component: "webhook" });
    const { namespace, secretName } = settings.certificates;
    const events = createRefusalRecorder({
      kubeConfig: ctx.kubeConfig,
      client: ctx.kube,
      instance: ctx.replica,
      logger,
      registry: ctx.registry,
    });
    webhook = createWebhook({
      ...settings,
      kube: ctx.kube,
      identities: ctx.caches.informer<AgentIdentity>(WEBHOOK_CACHES.identities),
      blueprints: ctx.caches.informer<AgentIdentityBlueprint>(WEBHOOK_CACHES.blueprints),
      namespaces: ctx.caches.informer<NamespaceObject>(WEBHOOK_CACHES.namespaces),
      secrets: ctx.caches.informer<SecretObject>(secretCache(namespace, secretName)),
      events,
      logger,
      registry: ctx.registry,
      ready: () => ctx.caches.hasSynced(),
    });
    const w = webhook;
    return {
      name: "webhook",
      needsLeaderElection: false,
      start: () => w.start(),
      // Stop taking reviews at shutdown; the API server's retries reach another replica. Then the refusal
      // Events still waiting are dropped, and those in flight get a second, not a silent API server's 30 s.
      async stop() {
        try {
          await w.close();
        } finally {
          await events.close();
        }
      },
      ready: () => w.ready(),
    };
  };
  const upkeep = (ctx: WebhookContext): WebhookComponent => {
    let running: Promise<void> | undefined;
    return {
      name: "webhook-certificates",
      needsLeaderElection: true,
      start(signal) {
        if (!webhook) throw new Error("the webhook component must be built before webhook-certificates");
        running = webhook.runLeader(ctx.leaderKube, signal);
      },
      async stop() {
        await running;
        running = undefined;
      },
      ready: () => true,
    };
  };
  return [serve, upkeep];
}
