import type { Registry } from "prom-client";
import { API_VERSION, BLUEPRINT_PLURAL, KIND, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Informer } from "../kube/informer.ts";
import type { Logger } from "../lib/log.ts";
import type { SecretObject } from "./certificate-manager.ts";
import { createGuard } from "./guard-review.ts";
import { type ApiReads, createApiReads, identityPathOf, type NamespaceObject } from "./reads.ts";
import type { Refusal } from "./refusals.ts";
import { createReviewer, type Resolved, type ResolveOptions } from "./review.ts";
import type { IdentitySource } from "./select.ts";
import { whoAmI } from "./self.ts";
import { type CertificateSettings, createServing, type Serving } from "./serving.ts";
import {
  detectNativeSidecars,
  type NativeSidecarMode,
  type SidecarFlags,
  sidecarSettings,
} from "./settings.ts";
import { createTargetCache, type TargetInput } from "./target.ts";
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

export type { NamespaceObject };

/** Cache specs of what the webhook reads, for the manager's shared caches (same specs as the operator's share one informer). */
export const WEBHOOK_CACHES = {
  identities: { path: `/apis/${API_VERSION}/${PLURAL}`, resource: "agentidentities" },
  blueprints: { path: `/apis/${API_VERSION}/${BLUEPRINT_PLURAL}`, resource: "agentidentityblueprints" },
  namespaces: { path: "/api/v1/namespaces", resource: "namespaces" },
} as const;

export { identityPathOf };

/**
 * The identity's blueprint and namespace, then the checks and the rendering (`target`). At once when both
 * are cached (nearly every review); a promise only when the API server is asked: a cache miss (a blueprint
 * or namespace made a moment ago), or `freshNamespace` (the review's one re-check of namespace labels the
 * cache may not have caught up with, recheck.ts).
 */
export function createResolve(deps: {
  blueprints: Pick<Informer<AgentIdentityBlueprint>, "get">;
  namespaces: Pick<Informer<NamespaceObject>, "get">;
  api: Pick<ApiReads, "blueprint" | "namespace">;
  target(input: Omit<TargetInput, "allowedAuthorityHosts">): Resolved;
}): (identity: AgentIdentity, namespace: string, options?: ResolveOptions) => Resolved | Promise<Resolved> {
  const target = (
    identity: AgentIdentity,
    namespace: string,
    blueprint: AgentIdentityBlueprint | undefined,
    ns: NamespaceObject | undefined,
  ) =>
    deps.target({ identity, blueprint, namespace: { name: namespace, labels: ns?.metadata.labels ?? {} } });
  return (identity, namespace, options) => {
    const blueprint = deps.blueprints.get(undefined, identity.spec.blueprintRef.name);
    const ns = options?.freshNamespace ? undefined : deps.namespaces.get(undefined, namespace);
    if (blueprint && ns) return target(identity, namespace, blueprint, ns);
    return Promise.all([
      blueprint ?? deps.api.blueprint(identity.spec.blueprintRef.name),
      ns ?? deps.api.namespace(namespace),
    ]).then(([b, n]) => target(identity, namespace, b, n));
  };
}

export function createWebhook(options: WebhookOptions): Webhook {
  const { kube, identities, logger } = options;
  let settings: SidecarSettings | undefined;
  // Every read of the API server has a deadline below the webhook's timeoutSeconds (reads.ts).
  const api = createApiReads(kube);
  const source: IdentitySource = {
    cached: (ns, name) => identities.get(ns, name),
    cachedList: (ns) => identities.list(ns),
    read: api.identity,
    list: api.identities,
  };
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
  const resolve = createResolve({
    blueprints: options.blueprints,
    namespaces: options.namespaces,
    api,
    target: (input) =>
      resolveTarget({ ...input, allowedAuthorityHosts: options.allowedAuthorityHosts ?? [] }),
  });
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
    readPod: api.pod,
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
