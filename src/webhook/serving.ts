import type { Registry } from "prom-client";
import type { KubeClient } from "../kube/client.ts";
import type { Informer } from "../kube/informer.ts";
import type { Logger } from "../lib/log.ts";
import {
  type CertificateManager,
  createCertificateManager,
  type SecretObject,
} from "./certificate-manager.ts";
import { type CertificatePolicy, DEFAULT_POLICY, serviceDnsNames } from "./certificates.ts";
import type { GuardRequest, GuardResult } from "./guard-review.ts";
import { guardRoute } from "./guard-route.ts";
import { createWebhookMetrics, type WebhookMetrics } from "./metrics.ts";
import { type AdmissionServer, type Reviewer, startAdmissionServer } from "./server.ts";

/**
 * The webhook's serving half, independent of the AgentIdentity API: the HTTPS server on every replica,
 * the certificate each replica loads from the Secret, and the leader's upkeep of that Secret and of the
 * caBundle. `index.ts` plugs the AgentIdentity-specific reviewer into it.
 */

export type CertificateMode = "self" | "external";

export interface CertificateSettings {
  /** self: the leader issues and rotates; external: cert-manager (or a person) writes the Secret. */
  mode: CertificateMode;
  /** The manager's own namespace, where the Secret lives. */
  namespace: string;
  secretName: string;
  webhookConfigurationName: string;
  /** The Service the API server calls (its DNS names go into the leaf). */
  serviceName: string;
  /** Extra subjectAltNames, e.g. 127.0.0.1 when the API server calls a URL on loopback. */
  extraDnsNames?: string[];
  ipAddresses?: string[];
  policy?: Partial<Omit<CertificatePolicy, "dnsNames" | "ipAddresses">>;
  /** How long API servers may take to see a new caBundle (default 60 s). */
  caPropagationMs?: number;
}

export interface ServingOptions {
  host: string;
  port: number;
  reviewer: Reviewer;
  /** The guard's reviewer (guard-review.ts), served at GUARD_PATH beside the mutating route. */
  guard?: (request: GuardRequest) => Promise<GuardResult>;
  certificates: CertificateSettings;
  /** The informer on the one Secret (see `secretCache`); every replica watches it. */
  secrets: Informer<SecretObject>;
  logger: Logger;
  registry: Registry;
  /** Extra readiness, e.g. the caches have synced. */
  ready?: () => boolean;
}

export interface Serving {
  metrics: WebhookMetrics;
  certificates: CertificateManager;
  /** Starts the HTTPS server and loads the certificate whenever the Secret changes. */
  start(): Promise<void>;
  /** Leader-only: issues and renews the certificate and keeps the caBundle (mode self; a no-op otherwise). */
  runLeader(kube: KubeClient, signal: AbortSignal): Promise<void>;
  ready(): boolean;
  port(): number;
  close(): Promise<void>;
}

/** The cache spec of the webhook's Secret: one object, by name (RBAC can then be limited to that name). */
export function secretCache(namespace: string, name: string) {
  return {
    path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
    resource: "secrets",
    fieldSelector: `metadata.name=${name}`,
  };
}

export function certificatePolicy(settings: CertificateSettings): CertificatePolicy {
  return {
    ...DEFAULT_POLICY,
    ...settings.policy,
    dnsNames: [
      ...serviceDnsNames(settings.serviceName, settings.namespace),
      ...(settings.extraDnsNames ?? []),
    ],
    ipAddresses: settings.ipAddresses ?? [],
  };
}

export function createServing(options: ServingOptions): Serving {
  const metrics = createWebhookMetrics(options.registry);
  const log = options.logger;
  let server: AdmissionServer | undefined;
  let pending: { cert: string; key: string } | undefined;
  const certificates = createCertificateManager({
    namespace: options.certificates.namespace,
    secretName: options.certificates.secretName,
    webhookConfigurationName: options.certificates.webhookConfigurationName,
    policy: certificatePolicy(options.certificates),
    ...(options.certificates.caPropagationMs !== undefined
      ? { caPropagationMs: options.certificates.caPropagationMs }
      : {}),
    logger: log.child({ part: "certificates" }),
    metrics,
    onCertificate(cert, key) {
      if (server) server.setCertificate(cert, key);
      else pending = { cert, key };
    },
  });
  const reload = (secret: SecretObject) => {
    if (secret.metadata.name !== options.certificates.secretName) return;
    certificates.load(secret);
    certificates.nudge();
  };
  options.secrets.onAdd(reload);
  options.secrets.onUpdate(reload);

  return {
    metrics,
    certificates,
    async start() {
      server = await startAdmissionServer({
        host: options.host,
        port: options.port,
        review: options.reviewer,
        logger: log,
        metrics,
        ...(options.ready ? { ready: options.ready } : {}),
        ...(options.guard ? { routes: [guardRoute({ review: options.guard, logger: log, metrics })] } : {}),
      });
      if (pending) server.setCertificate(pending.cert, pending.key);
      pending = undefined;
      certificates.load(options.secrets.get(options.certificates.namespace, options.certificates.secretName));
    },
    async runLeader(kube, signal) {
      if (options.certificates.mode !== "self") return;
      await certificates.runLeader(kube, signal);
    },
    ready: () => server?.ready() ?? false,
    port: () => server?.port() ?? options.port,
    async close() {
      await server?.close();
    },
  };
}
