import { jsonPointerSegment, type KubeClient } from "../kube/client.ts";
import type { Logger } from "../lib/log.ts";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from "../lib/pki.ts";
import {
  type CertificatePolicy,
  caBundle,
  decodeSecretData,
  encodeSecretData,
  loadable,
  type Plan,
  planCertificates,
  SECRET_KEYS,
  type SecretData,
} from "./certificates.ts";
import type { WebhookMetrics } from "./metrics.ts";

/**
 * The serving certificate's I/O. The leader keeps a CA and a leaf in a Secret of the manager's namespace
 * and the CA bundle in the MutatingWebhookConfiguration (`ensure`); every replica loads the leaf from the
 * Secret whenever it changes (`load`), without a restart. With cert-manager (mode `external`) only
 * `load` runs: cert-manager writes the Secret and its CA injector the bundle.
 */

export interface SecretObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  type?: string;
  data?: Record<string, string>;
}

export const MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
/** The guard's configuration (same name as the mutating one): the leader keeps both caBundles. */
export const VWC_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
/** How soon the leader looks again for a webhook configuration that did not exist yet. */
export const PENDING_BUNDLE_RETRY_MS = 2_000;
/** On the Secret: when its current CA was first written to the caBundle (RFC 3339). */
export const ANNOTATION_CA_PUBLISHED = "agentid.io/ca-published-at";

export interface CertificateManagerOptions {
  namespace: string;
  secretName: string;
  webhookConfigurationName: string;
  policy: CertificatePolicy;
  /** How long API servers may take to see a new caBundle before a leaf of a new CA is served (default 60 s). */
  caPropagationMs?: number;
  logger: Logger;
  metrics: WebhookMetrics;
  /** Loads a serving certificate into the server. */
  onCertificate(cert: string, key: string): void;
  now?: () => number;
}

export interface CertificateManager {
  /** Loads the leaf of a Secret's data when it is valid and new; false when there is nothing loadable. */
  load(secret: SecretObject | undefined): boolean;
  /** Leader: brings the Secret and the caBundle up to date; resolves to the plan it acted on. */
  ensure(kube: KubeClient, options?: { force?: "leaf" | "ca" }): Promise<Plan>;
  /** Leader: calls `ensure` now and whenever a renewal is due (at least every `intervalMs`) until aborted. */
  runLeader(kube: KubeClient, signal: AbortSignal, intervalMs?: number): Promise<void>;
  /** Makes a waiting `runLeader` look again now (the Secret changed). */
  nudge(): void;
}

export function secretPath(namespace: string, name?: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets${name ? `/${encodeURIComponent(name)}` : ""}`;
}

export function createCertificateManager(options: CertificateManagerOptions): CertificateManager {
  const { logger, metrics, policy } = options;
  const now = options.now ?? Date.now;
  const propagationMs = options.caPropagationMs ?? 60_000;
  let loadedCert: string | undefined;
  let wake: (() => void) | undefined;

  async function newLeaf(caCert: string, caKey: string): Promise<{ cert: string; key: string }> {
    const ca = await loadCertificateAuthority(caCert, caKey);
    const leaf = await issueCertificate(ca, {
      commonName: policy.dnsNames[0] ?? policy.ipAddresses[0] ?? "agentid-webhook",
      dnsNames: policy.dnsNames,
      ipAddresses: policy.ipAddresses,
      usage: "server",
      validDays: policy.leafValidDays,
    });
    metrics.certificateRenewals.inc({ kind: "leaf" });
    return { cert: leaf.certPem, key: leaf.keyPem };
  }

  async function issue(current: SecretData, plan: Exclude<Plan, { action: "keep" }>): Promise<SecretData> {
    if (plan.action === "issue-leaf") {
      const caCert = current[SECRET_KEYS.caCert] ?? "";
      const caKey = current[SECRET_KEYS.caKey] ?? "";
      const leaf = await newLeaf(caCert, caKey);
      return { ...current, [SECRET_KEYS.cert]: leaf.cert, [SECRET_KEYS.key]: leaf.key };
    }
    const ca = await createCertificateAuthority(
      `agentid-webhook-ca-${Math.floor(now() / 1000)}`,
      policy.caValidDays,
    );
    metrics.certificateRenewals.inc({ kind: "ca" });
    const next: SecretData = { [SECRET_KEYS.caCert]: ca.certPem, [SECRET_KEYS.caKey]: ca.keyPem };
    // Keep trusting the CA that signed the leaf replicas are serving right now.
    if (current[SECRET_KEYS.caCert]) next[SECRET_KEYS.previousCaCert] = current[SECRET_KEYS.caCert];
    if (plan.leafToo) {
      const leaf = await newLeaf(ca.certPem, ca.keyPem);
      next[SECRET_KEYS.cert] = leaf.cert;
      next[SECRET_KEYS.key] = leaf.key;
    } else {
      next[SECRET_KEYS.cert] = current[SECRET_KEYS.cert];
      next[SECRET_KEYS.key] = current[SECRET_KEYS.key];
    }
    return next;
  }

  async function writeSecret(
    kube: KubeClient,
    existing: SecretObject | undefined,
    data: SecretData,
    annotations: Record<string, string>,
  ): Promise<SecretObject> {
    const body: SecretObject = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: options.secretName,
        namespace: options.namespace,
        labels: { "app.kubernetes.io/name": "agentid", "app.kubernetes.io/component": "webhook" },
        annotations,
        ...(existing?.metadata.resourceVersion ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      type: "kubernetes.io/tls",
      data: encodeSecretData(data),
    };
    return existing
      ? kube.replace<SecretObject>(secretPath(options.namespace, options.secretName), body)
      : kube.create<SecretObject>(secretPath(options.namespace), body);
  }

  /** True when both configurations (mutating and the guard's validating one) carry the bundle. */
  async function patchCaBundle(kube: KubeClient, bundle: string): Promise<boolean> {
    const mutating = await patchOneCaBundle(kube, bundle, MWC_PATH, "MutatingWebhookConfiguration");
    const validating = await patchOneCaBundle(kube, bundle, VWC_PATH, "ValidatingWebhookConfiguration");
    return mutating && validating;
  }

  async function patchOneCaBundle(
    kube: KubeClient,
    bundle: string,
    collection: string,
    kind: string,
  ): Promise<boolean> {
    const path = `${collection}/${encodeURIComponent(options.webhookConfigurationName)}`;
    const config = await kube.getOptional<{
      webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }>;
    }>(path);
    if (!config) {
      logger.warn(
        { configuration: options.webhookConfigurationName },
        `${kind} not found; its caBundle will be set once it exists`,
      );
      return false;
    }
    const encoded = Buffer.from(bundle).toString("base64");
    const ops: unknown[] = [];
    (config.webhooks ?? []).forEach((w, i) => {
      if (w.clientConfig?.caBundle === encoded) return;
      // The test pins the index to the webhook we read, so a concurrent edit fails instead of misplacing.
      ops.push({ op: "test", path: `/webhooks/${i}/name`, value: w.name });
      ops.push({
        op: "add",
        path: `/webhooks/${i}/clientConfig/${jsonPointerSegment("caBundle")}`,
        value: encoded,
      });
    });
    if (ops.length === 0) return true;
    await kube.patch(path, "json", ops);
    logger.info({ configuration: options.webhookConfigurationName, kind }, "caBundle updated");
    return true;
  }

  let chain: Promise<unknown> = Promise.resolve();
  /** The configuration did not exist at the last round: its caBundle is still to be written. */
  let bundlePending = false;

  async function ensureNow(kube: KubeClient, ensureOptions: { force?: "leaf" | "ca" }): Promise<Plan> {
    const path = secretPath(options.namespace, options.secretName);
    let existing = await kube.getOptional<SecretObject>(path);
    const current = decodeSecretData(existing?.data);
    const publishedRaw = existing?.metadata.annotations?.[ANNOTATION_CA_PUBLISHED];
    const published = publishedRaw ? Date.parse(publishedRaw) : undefined;
    let plan = planCertificates(
      {
        data: existing ? current : undefined,
        caPublishedAt: Number.isNaN(published) ? undefined : published,
        propagationMs,
      },
      policy,
      now(),
    );
    if (ensureOptions.force === "ca")
      plan = { action: "issue-ca", reason: "rotation asked for", leafToo: false };
    else if (ensureOptions.force === "leaf" && plan.action === "keep")
      plan = { action: "issue-leaf", reason: "rotation asked for" };
    let data = current;
    let annotations = { ...existing?.metadata.annotations };
    if (plan.action !== "keep") {
      data = await issue(current, plan);
      if (plan.action === "issue-ca") delete annotations[ANNOTATION_CA_PUBLISHED];
      logger.info({ reason: plan.reason, action: plan.action }, "issuing the webhook's serving certificate");
      // A conflict (someone wrote it first) throws; the next round starts from what is there.
      existing = await writeSecret(kube, existing, data, annotations);
    }
    load(existing);
    const inBundle = await patchCaBundle(kube, caBundle(data, now()));
    bundlePending = !inBundle;
    if (inBundle && existing && !annotations[ANNOTATION_CA_PUBLISHED]) {
      annotations = { ...annotations, [ANNOTATION_CA_PUBLISHED]: new Date(now()).toISOString() };
      await writeSecret(kube, existing, data, annotations);
    }
    return plan;
  }

  function load(secret: SecretObject | undefined): boolean {
    const material = loadable(decodeSecretData(secret?.data), now());
    if (!material) {
      if (secret) {
        metrics.certificateLoads.inc({ result: "invalid" });
        logger.warn(
          { secret: options.secretName },
          "the webhook Secret holds no valid serving certificate yet",
        );
      }
      return false;
    }
    if (material.cert === loadedCert) return true;
    options.onCertificate(material.cert, material.key);
    loadedCert = material.cert;
    metrics.certificateLoads.inc({ result: "loaded" });
    logger.info({ secret: options.secretName }, "serving certificate loaded");
    return true;
  }

  const manager: CertificateManager = {
    load,

    ensure(kube, ensureOptions = {}) {
      // One at a time in this process: the leader's loop and an explicit call would otherwise race on the Secret.
      const run = chain.then(() => ensureNow(kube, ensureOptions));
      chain = run.then(
        () => undefined,
        () => undefined,
      );
      return run;
    },

    nudge() {
      wake?.();
    },

    async runLeader(kube, signal, intervalMs = 10 * 60_000) {
      while (!signal.aborted) {
        let wait = intervalMs;
        try {
          const plan = await manager.ensure(kube);
          if (plan.action === "keep") wait = Math.max(1_000, Math.min(intervalMs, plan.nextCheckAt - now()));
          // The chart may create the configuration after the manager starts: until it exists (and has our
          // caBundle) opted-in pods are refused, so look again soon rather than at the next renewal.
          if (bundlePending) wait = Math.min(wait, PENDING_BUNDLE_RETRY_MS);
        } catch (error) {
          wait = Math.min(intervalMs, 5_000);
          logger.warn({ err: (error as Error).message }, "serving certificate upkeep failed; retrying");
        }
        // Aborted while ensuring (a step-down aborts the request in flight): the abort event has fired
        // already, so waiting for it would hold the drain, and the shutdown, for the whole retry delay.
        if (signal.aborted) break;
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, wait);
          signal.addEventListener("abort", done, { once: true });
          wake = done;
        });
      }
    },
  };
  return manager;
}
