import type { Registry } from "prom-client";
import { API_VERSION, BLUEPRINT_PLURAL, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Informer } from "../kube/informer.ts";
import type { Logger } from "../lib/log.ts";
import type { SecretObject } from "./certificate-manager.ts";
import { recordRefusalEvent } from "./events.ts";
import { createGuard } from "./guard-review.ts";
import {
  type ApiReads,
  createApiReads,
  identityPathOf,
  type NamespaceObject,
  type ReadBudget,
} from "./reads.ts";
import type { Refusal } from "./refusals.ts";
import { createReviewer, type Resolved, type ResolveTarget } from "./review.ts";
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
 * How long a blueprint the API server said does not exist is taken as missing without asking again. Every
 * pod of an AgentIdentity naming a blueprint that does not exist misses the cache, and each cost a GET of
 * it (a namespace user can write such an identity and create pods in a loop). Safe: a blueprint created
 * just after is in the shared cache within a watch event, and the cache is asked first, before this memory.
 */
export const MISSING_BLUEPRINT_TTL_MS = 3000;
const MISSING_BLUEPRINT_MAX_ENTRIES = 10_000;

/**
 * The identity's blueprint and namespace, then the checks and the rendering (`target`). At once when both
 * are cached (nearly every review), or the blueprint was found missing a moment ago
 * (MISSING_BLUEPRINT_TTL_MS); otherwise the API server is asked under the review's `budget` (a blueprint
 * or namespace made a moment ago), or `freshNamespace` (the review's one re-check of namespace labels the
 * cache may not have caught up with, recheck.ts). Without a budget, `undefined` when it would have to read.
 */
export function createResolve(deps: {
  blueprints: Pick<Informer<AgentIdentityBlueprint>, "get">;
  namespaces: Pick<Informer<NamespaceObject>, "get">;
  api: Pick<ApiReads, "blueprint" | "namespace">;
  target(input: Omit<TargetInput, "allowedAuthorityHosts">): Resolved;
  /** The clock of the missing-blueprint memory (tests); Date.now by default. */
  now?: () => number;
}): ResolveTarget {
  const now = deps.now ?? Date.now;
  const missingUntil = new Map<string, number>();
  const knownMissing = (name: string): boolean => {
    const until = missingUntil.get(name);
    if (until === undefined) return false;
    if (until > now()) return true;
    missingUntil.delete(name);
    return false;
  };
  const readBlueprint = (name: string, budget: ReadBudget) =>
    deps.api.blueprint(name, budget).then((b) => {
      if (b) missingUntil.delete(name);
      else {
        if (missingUntil.size >= MISSING_BLUEPRINT_MAX_ENTRIES) missingUntil.clear();
        missingUntil.set(name, now() + MISSING_BLUEPRINT_TTL_MS);
      }
      return b;
    });
  const target = (
    identity: AgentIdentity,
    namespace: string,
    blueprint: AgentIdentityBlueprint | undefined,
    ns: NamespaceObject | undefined,
  ) =>
    deps.target({ identity, blueprint, namespace: { name: namespace, labels: ns?.metadata.labels ?? {} } });
  return (identity, namespace, options) => {
    const name = identity.spec.blueprintRef.name;
    const blueprint = deps.blueprints.get(undefined, name);
    const missing = blueprint === undefined && knownMissing(name);
    const ns = options?.freshNamespace ? undefined : deps.namespaces.get(undefined, namespace);
    if ((blueprint || missing) && ns) return target(identity, namespace, blueprint, ns);
    const budget = options?.budget;
    if (!budget) return undefined;
    return Promise.all([
      blueprint ?? (missing ? undefined : readBlueprint(name, budget)),
      ns ?? deps.api.namespace(namespace, budget),
    ]).then(([b, n]) => target(identity, namespace, b, n));
  };
}

export function createWebhook(options: WebhookOptions): Webhook {
  const { kube, identities, logger } = options;
  let settings: SidecarSettings | undefined;
  // Every review's reads of the API server share one deadline below the webhook's timeoutSeconds, and
  // concurrent reads of one object are one request (reads.ts).
  const api = createApiReads(kube);
  const source: IdentitySource = {
    cached: (ns, name) => identities.get(ns, name),
    cachedList: (ns) => identities.list(ns),
    read: api.identity,
    list: api.identities,
  };
  // Rendering per identity version, once; the checks again whenever the informer's objects change.
  const resolveTarget = createTargetCache();
  const recordRefusal = (identity: AgentIdentity, refusals: readonly Refusal[], reason: string) =>
    recordRefusalEvent(options.events, identity, refusals, reason);
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
