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
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  type?: string;
  data?: Record<string, string>;
}

export const MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

export interface CertificateManagerOptions {
  namespace: string;
  secretName: string;
  webhookConfigurationName: string;
  policy: CertificatePolicy;
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
  ensure(kube: KubeClient, options?: { force?: "leaf" | "all" }): Promise<Plan>;
  /** Leader: calls `ensure` now and whenever a renewal is due (at least every `intervalMs`) until aborted. */
  runLeader(kube: KubeClient, signal: AbortSignal, intervalMs?: number): Promise<void>;
}

export function secretPath(namespace: string, name?: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets${name ? `/${encodeURIComponent(name)}` : ""}`;
}

export function createCertificateManager(options: CertificateManagerOptions): CertificateManager {
  const { logger, metrics, policy } = options;
  const now = options.now ?? Date.now;
  let loadedCert: string | undefined;

  async function issue(current: SecretData, all: boolean): Promise<SecretData> {
    let caCert = current[SECRET_KEYS.caCert];
    let caKey = current[SECRET_KEYS.caKey];
    const next: SecretData = {};
    if (all || !caCert || !caKey) {
      const ca = await createCertificateAuthority(
        `agentid-webhook-ca@${Math.floor(now() / 1000)}`,
        policy.caValidDays,
      );
      // Keep trusting the CA that signed the leaves replicas are serving right now.
      if (caCert) next[SECRET_KEYS.previousCaCert] = caCert;
      caCert = ca.certPem;
      caKey = ca.keyPem;
      metrics.certificateRenewals.inc({ kind: "ca" });
    } else if (current[SECRET_KEYS.previousCaCert]) {
      next[SECRET_KEYS.previousCaCert] = current[SECRET_KEYS.previousCaCert];
    }
    const ca = await loadCertificateAuthority(caCert, caKey);
    const leaf = await issueCertificate(ca, {
      commonName: policy.dnsNames[0] ?? policy.ipAddresses[0] ?? "agentid-webhook",
      dnsNames: policy.dnsNames,
      ipAddresses: policy.ipAddresses,
      usage: "server",
      validDays: policy.leafValidDays,
    });
    metrics.certificateRenewals.inc({ kind: "leaf" });
    return {
      ...next,
      [SECRET_KEYS.caCert]: caCert,
      [SECRET_KEYS.caKey]: caKey,
      [SECRET_KEYS.cert]: leaf.certPem,
      [SECRET_KEYS.key]: leaf.keyPem,
    };
  }

  async function writeSecret(
    kube: KubeClient,
    existing: SecretObject | undefined,
    data: SecretData,
  ): Promise<SecretObject> {
    const body: SecretObject = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: options.secretName,
        namespace: options.namespace,
        labels: { "app.kubernetes.io/name": "agentid", "app.kubernetes.io/component": "webhook" },
        ...(existing?.metadata.resourceVersion ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      type: "kubernetes.io/tls",
      data: encodeSecretData(data),
    };
    return existing
      ? kube.replace<SecretObject>(secretPath(options.namespace, options.secretName), body)
      : kube.create<SecretObject>(secretPath(options.namespace), body);
  }

  async function patchCaBundle(kube: KubeClient, bundle: string): Promise<void> {
    const path = `${MWC_PATH}/${encodeURIComponent(options.webhookConfigurationName)}`;
    const config = await kube.getOptional<{
      webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }>;
    }>(path);
    if (!config) {
      logger.warn(
        { configuration: options.webhookConfigurationName },
        "MutatingWebhookConfiguration not found; its caBundle will be set once it exists",
      );
      return;
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
    if (ops.length === 0) return;
    await kube.patch(path, "json", ops);
    logger.info({ configuration: options.webhookConfigurationName }, "caBundle updated");
  }

  const manager: CertificateManager = {
    load(secret) {
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
    },

    async ensure(kube, ensureOptions = {}) {
      const existing = await kube.getOptional<SecretObject>(
        secretPath(options.namespace, options.secretName),
      );
      const current = decodeSecretData(existing?.data);
      let plan = planCertificates(existing ? current : undefined, policy, now());
      if (ensureOptions.force === "all") plan = { action: "issue-all", reason: "rotation asked for" };
      else if (ensureOptions.force === "leaf" && plan.action === "keep")
        plan = { action: "issue-leaf", reason: "rotation asked for" };
      let data = current;
      if (plan.action !== "keep") {
        data = await issue(current, plan.action === "issue-all");
        logger.info(
          { reason: plan.reason, action: plan.action },
          "issuing the webhook's serving certificate",
        );
        // A conflict (someone wrote it first) throws; the next round starts from what is there.
        manager.load(await writeSecret(kube, existing, data));
      } else {
        manager.load(existing);
      }
      await patchCaBundle(kube, caBundle(data, now()));
      return plan;
    },

    async runLeader(kube, signal, intervalMs = 10 * 60_000) {
      while (!signal.aborted) {
        let wait = intervalMs;
        try {
          const plan = await manager.ensure(kube);
          if (plan.action === "keep") wait = Math.max(1_000, Math.min(intervalMs, plan.nextCheckAt - now()));
        } catch (error) {
          wait = Math.min(intervalMs, 5_000);
          logger.warn({ err: (error as Error).message }, "serving certificate upkeep failed; retrying");
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          signal.addEventListener(
            "abort",
            () => {
              clearTimeout(timer);
              resolve();
            },
            { once: true },
          );
        });
      }
    },
  };
  return manager;
}
