import type { Registry } from "prom-client";
import { API_VERSION, KIND, PLURAL } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Informer } from "../kube/informer.ts";
import type { Logger } from "../lib/log.ts";
import type { SecretObject } from "./certificate-manager.ts";
import { createReviewer } from "./review.ts";
import type { IdentitySource } from "./select.ts";
import { type CertificateSettings, createServing, type Serving } from "./serving.ts";
import {
  detectNativeSidecars,
  type NativeSidecarMode,
  type SidecarFlags,
  sidecarSettings,
} from "./settings.ts";
import { resolveTarget } from "./target.ts";
import type { SidecarSettings } from "./types.ts";

/**
 * The admission webhook as a component with an explicit interface: the manager (or a test) hands it the
 * shared informers, a kube client, an event recorder, a logger and a metrics registry, and runs
 * `start` on every replica and `runLeader` on the leader.
 */

export interface WebhookOptions {
  kube: KubeClient;
  identities: Informer<AgentIdentity>;
  /** The informer on the serving-certificate Secret (`secretCache` in serving.ts). */
  secrets: Informer<SecretObject>;
  events?: EventRecorder;
  logger: Logger;
  registry: Registry;
  listen: { host: string; port: number };
  sidecar: Omit<SidecarFlags, "native"> & { native: NativeSidecarMode };
  certificates: CertificateSettings;
  /** Extra readiness, e.g. the manager's caches have synced. */
  ready?: () => boolean;
}

export interface Webhook
  extends Pick<Serving, "runLeader" | "ready" | "port" | "close" | "certificates" | "metrics"> {
  start(): Promise<void>;
  settings(): SidecarSettings | undefined;
}

export function identityPathOf(namespace: string, name?: string): string {
  return `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}${name ? `/${encodeURIComponent(name)}` : ""}`;
}

export function createWebhook(options: WebhookOptions): Webhook {
  const { kube, identities, logger } = options;
  let settings: SidecarSettings | undefined;
  const source: IdentitySource<AgentIdentity> = {
    cached: (ns, name) => identities.get(ns, name),
    cachedList: (ns) => identities.list(ns),
    read: (ns, name) => kube.getOptional<AgentIdentity>(identityPathOf(ns, name)),
    list: async (ns) => (await kube.get<{ items?: AgentIdentity[] }>(identityPathOf(ns))).items ?? [],
    serviceAccountOf: (i) => i.spec.serviceAccountName,
  };
  const reviewer = createReviewer<AgentIdentity>({
    identities: source,
    resolve: async (identity) => resolveTarget(identity),
    settings: () => {
      if (!settings) throw new Error("the webhook answered before its settings were resolved");
      return settings;
    },
    logger,
    recordRefusal(identity, refusals) {
      options.events?.record(
        { apiVersion: API_VERSION, kind: KIND, metadata: identity.metadata },
        "Warning",
        "PodRefused",
        `a pod was refused: ${refusals.map((r) => r.message).join("; ")}`,
      );
    },
  });
  const serving = createServing({
    host: options.listen.host,
    port: options.listen.port,
    reviewer,
    certificates: options.certificates,
    secrets: options.secrets,
    logger,
    registry: options.registry,
    ready: () => settings !== undefined && (options.ready?.() ?? true),
  });
  return {
    metrics: serving.metrics,
    certificates: serving.certificates,
    async start() {
      const native = await detectNativeSidecars(kube, options.sidecar.native);
      settings = sidecarSettings({ ...options.sidecar, native });
      logger.info({ native, image: settings.image }, "webhook settings");
      await serving.start();
    },
    settings: () => settings,
    runLeader: (k, signal) => serving.runLeader(k, signal),
    ready: () => serving.ready(),
    port: () => serving.port(),
    close: () => serving.close(),
  };
}
