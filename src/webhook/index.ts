import type { Registry } from "prom-client";
import { API_VERSION, BLUEPRINT_PLURAL, KIND, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Informer } from "../kube/informer.ts";
import type { Logger } from "../lib/log.ts";
import type { SecretObject } from "./certificate-manager.ts";
import { createGuard } from "./guard-review.ts";
import type { JsonObject } from "./raw.ts";
import type { Refusal } from "./refusals.ts";
import { createReviewer, type Resolved } from "./review.ts";
import type { IdentitySource } from "./select.ts";
import { whoAmI } from "./self.ts";
import { type CertificateSettings, createServing, type Serving } from "./serving.ts";
import {
  detectNativeSidecars,
  type NativeSidecarMode,
  type SidecarFlags,
  sidecarSettings,
} from "./settings.ts";
import { createTargetCache } from "./target.ts";
import type { SidecarSettings } from "./types.ts";

/**
 * The admission webhook as a component with an explicit interface: the manager (or a test) hands it the
 * shared informers, a kube client, an event recorder, a logger and a metrics registry, and runs
 * `start` on every replica and `runLeader` on the leader.
 */

export interface WebhookOptions {
  kube: KubeClient;
  identities: Informer<AgentIdentity>;
  blueprints: Informer<AgentIdentityBlueprint>;
  namespaces: Informer<NamespaceObject>;
  /** The manager's --allowed-authority-hosts (a Custom cloud's host must be listed). */
  allowedAuthorityHosts?: readonly string[];
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

export interface NamespaceObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; labels?: Record<string, string> };
}

/** Cache specs of what the webhook reads, for the manager's shared caches (same specs as the operator's share one informer). */
export const WEBHOOK_CACHES = {
  identities: { path: `/apis/${API_VERSION}/${PLURAL}`, resource: "agentidentities" },
  blueprints: { path: `/apis/${API_VERSION}/${BLUEPRINT_PLURAL}`, resource: "agentidentityblueprints" },
  namespaces: { path: "/api/v1/namespaces", resource: "namespaces" },
} as const;

export function identityPathOf(namespace: string, name?: string): string {
  return `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}${name ? `/${encodeURIComponent(name)}` : ""}`;
}

export function createWebhook(options: WebhookOptions): Webhook {
  const { kube, identities, logger } = options;
  let settings: SidecarSettings | undefined;
  const source: IdentitySource = {
    cached: (ns, name) => identities.get(ns, name),
    cachedList: (ns) => identities.list(ns),
    read: (ns, name) => kube.getOptional<AgentIdentity>(identityPathOf(ns, name)),
    list: async (ns) => (await kube.get<{ items?: AgentIdentity[] }>(identityPathOf(ns))).items ?? [],
  };
  // Cache first; a miss reads the API server (a blueprint or namespace made a moment ago).
  const blueprintOf = async (name: string) =>
    options.blueprints.get(undefined, name) ??
    (await kube.getOptional<AgentIdentityBlueprint>(
      `${WEBHOOK_CACHES.blueprints.path}/${encodeURIComponent(name)}`,
    ));
  const namespaceOf = async (name: string) =>
    options.namespaces.get(undefined, name) ??
    (await kube.getOptional<NamespaceObject>(`/api/v1/namespaces/${encodeURIComponent(name)}`));
  // Rendering per identity version, once; the checks again whenever the informer's objects change.
  const resolveTarget = createTargetCache();
  const recordRefusal = (identity: AgentIdentity, refusals: readonly Refusal[], reason: string) => {
    const what = reason === "PodRefused" ? "a pod was refused" : "a request was refused";
    options.events?.record(
      { apiVersion: API_VERSION, kind: KIND, metadata: identity.metadata },
      "Warning",
      reason,
      `${what}: ${refusals.map((r) => r.message).join("; ")}`,
    );
  };
  const target = (
    identity: AgentIdentity,
    namespace: string,
    blueprint?: AgentIdentityBlueprint,
    ns?: NamespaceObject,
  ) =>
    resolveTarget({
      identity,
      blueprint,
      namespace: { name: namespace, labels: ns?.metadata.labels ?? {} },
      allowedAuthorityHosts: options.allowedAuthorityHosts ?? [],
    });
  // At once when both are cached (nearly every review); a promise only when the API server is asked.
  const resolve = (identity: AgentIdentity, namespace: string): Resolved | Promise<Resolved> => {
    const blueprint = options.blueprints.get(undefined, identity.spec.blueprintRef.name);
    const ns = options.namespaces.get(undefined, namespace);
    if (blueprint && ns) return target(identity, namespace, blueprint, ns);
    return Promise.all([
      blueprint ?? blueprintOf(identity.spec.blueprintRef.name),
      ns ?? namespaceOf(namespace),
    ]).then(([b, n]) => target(identity, namespace, b, n));
  };
  const currentSettings = () => {
    if (!settings) throw new Error("the webhook answered before its settings were resolved");
    return settings;
  };
  const reviewer = createReviewer({
    identities: source,
    resolve,
    settings: currentSettings,
    logger,
    recordRefusal: (identity, refusals) => recordRefusal(identity, refusals, "PodRefused"),
  });
  // The manager's own user, as the API server names it (self.ts): its verification
  // TokenRequest for the exchange audience must pass the guard.
  let self: string[] = [];
  const guard = createGuard({
    identities: source,
    resolve,
    settings: currentSettings,
    trustedUsers: () => self,
    readPod: (ns, name) =>
      kube.getOptional<JsonObject>(
        `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`,
      ),
    logger: logger.child({ part: "guard" }),
    recordRefusal,
  });
  const serving = createServing({
    host: options.listen.host,
    port: options.listen.port,
    reviewer,
    guard,
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
      self = await whoAmI(kube, logger);
      logger.info({ native, image: settings.image, self: self[0] }, "webhook settings");
      await serving.start();
      logger.info({ port: serving.port() }, "admission server listening");
    },
    settings: () => settings,
    runLeader: (k, signal) => serving.runLeader(k, signal),
    ready: () => serving.ready(),
    port: () => serving.port(),
    close: () => serving.close(),
  };
}
