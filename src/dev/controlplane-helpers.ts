import type { KubeConfig } from "@kubernetes/client-node";
import { createKubeClient, isApiError, type KubeClient } from "../kube/client.ts";

/**
 * What tests (and the playground) do against a fresh control plane, in one call each: install a CRD,
 * register a webhook served from this process, mint a service-account token.
 *
 * Objects go over the wire as raw JSON (src/kube/client.ts): the typed models of @kubernetes/client-node
 * silently drop fields spelled as in YAML, e.g. a CRD's `x-kubernetes-validations` (its CEL rules).
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A Kubernetes object as plain JSON, e.g. parsed from a YAML manifest. */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  [key: string]: unknown;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

async function withClient<T>(kubeConfig: KubeConfig, use: (client: KubeClient) => Promise<T>): Promise<T> {
  const client = createKubeClient(kubeConfig);
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

/** Creates `object` at `collection`, or replaces the existing one of the same name. */
async function createOrReplace<T>(client: KubeClient, collection: string, object: RawObject): Promise<T> {
  try {
    return await client.create<T>(collection, object);
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
    const path = `${collection}/${encodeURIComponent(object.metadata.name)}`;
    const current = await client.get<RawObject>(path);
    const metadata = { ...object.metadata, resourceVersion: current.metadata.resourceVersion };
    return client.replace<T>(path, { ...object, metadata });
  }
}

export function establishedCondition(crd: unknown): { ok: boolean; reason: string } {
  const conditions = ((crd as { status?: { conditions?: Condition[] } }).status?.conditions ??
    []) as Condition[];
  const established = conditions.find((c) => c.type === "Established");
  const names = conditions.find((c) => c.type === "NamesAccepted");
  if (names?.status === "False")
    return { ok: false, reason: `names not accepted: ${names.message ?? names.reason}` };
  if (established?.status === "True") return { ok: true, reason: "Established" };
  return { ok: false, reason: established?.message ?? "not yet established" };
}

/** Creates the CRD, or replaces it when it exists, and waits until the apiserver serves it. */
export async function applyCrd(
  kubeConfig: KubeConfig,
  crd: RawObject,
  timeoutMs = 30_000,
): Promise<RawObject> {
  const collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
  return withClient(kubeConfig, async (client) => {
    await createOrReplace(client, collection, crd);
    const path = `${collection}/${encodeURIComponent(crd.metadata.name)}`;
    const deadline = Date.now() + timeoutMs;
    let reason = "not read yet";
    while (Date.now() < deadline) {
      const current = await client.get<RawObject>(path);
      const state = establishedCondition(current);
      if (state.ok) return current;
      reason = state.reason;
      if (reason.startsWith("names not accepted")) break;
      await sleep(100);
    }
    throw new Error(`CRD ${crd.metadata.name} was not established within ${timeoutMs} ms: ${reason}`);
  });
}

export interface WebhookOptions {
  /** Name of the webhook configuration; its one webhook is `<name>.agentid.io`. */
  name: string;
  /** https://127.0.0.1:<port>/<path> of a server in this process. */
  url: string;
  /** CA that signed the server's certificate. */
  caPem: string;
  /** Everything else of the webhook (rules, selectors, failurePolicy, ...), raw JSON; defaults suit pods. */
  webhook?: Record<string, unknown>;
}

const WEBHOOK_KINDS = {
  mutating: { kind: "MutatingWebhookConfiguration", resource: "mutatingwebhookconfigurations" },
  validating: { kind: "ValidatingWebhookConfiguration", resource: "validatingwebhookconfigurations" },
} as const;
type WebhookKind = keyof typeof WEBHOOK_KINDS;

function webhookCollection(kind: WebhookKind): string {
  return `/apis/admissionregistration.k8s.io/v1/${WEBHOOK_KINDS[kind].resource}`;
}

async function registerWebhook(kubeConfig: KubeConfig, kind: WebhookKind, options: WebhookOptions) {
  if (!/^https:\/\//.test(options.url)) throw new Error(`webhook URL must be https, got ${options.url}`);
  const webhook = {
    name: `${options.name}.agentid.io`,
    admissionReviewVersions: ["v1"],
    sideEffects: "None",
    failurePolicy: "Fail",
    timeoutSeconds: 10,
    rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] }],
    ...options.webhook,
    clientConfig: { url: options.url, caBundle: Buffer.from(options.caPem).toString("base64") },
  };
  const body: RawObject = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: WEBHOOK_KINDS[kind].kind,
    metadata: { name: options.name },
    webhooks: [webhook],
  };
  return withClient(kubeConfig, (client) =>
    createOrReplace<RawObject>(client, webhookCollection(kind), body),
  );
}

/**
 * Registers (or replaces) a mutating webhook that the apiserver calls at a loopback URL. The apiserver
 * picks the configuration up asynchronously (usually well under a second): probe with a dry-run request
 * before relying on it.
 */
export function registerMutatingWebhook(kubeConfig: KubeConfig, options: WebhookOptions): Promise<RawObject> {
  return registerWebhook(kubeConfig, "mutating", options);
}

/** Like `registerMutatingWebhook`, for a ValidatingWebhookConfiguration. */
export function registerValidatingWebhook(
  kubeConfig: KubeConfig,
  options: WebhookOptions,
): Promise<RawObject> {
  return registerWebhook(kubeConfig, "validating", options);
}

async function deleteWebhook(kubeConfig: KubeConfig, kind: WebhookKind, name: string): Promise<void> {
  await withClient(kubeConfig, async (client) => {
    try {
      await client.delete(`${webhookCollection(kind)}/${encodeURIComponent(name)}`);
    } catch (error) {
      if (!isApiError(error, 404)) throw error;
    }
  });
}

export const deleteMutatingWebhook = (kubeConfig: KubeConfig, name: string) =>
  deleteWebhook(kubeConfig, "mutating", name);
export const deleteValidatingWebhook = (kubeConfig: KubeConfig, name: string) =>
  deleteWebhook(kubeConfig, "validating", name);

export async function createNamespace(
  kubeConfig: KubeConfig,
  name: string,
  labels: Record<string, string> = {},
): Promise<RawObject> {
  return withClient(kubeConfig, (client) =>
    client.create<RawObject>("/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name, labels },
    }),
  );
}

export interface ServiceAccountTokenOptions {
  namespace: string;
  serviceAccount: string;
  audience: string;
  /** At least 600 (the apiserver refuses shorter tokens); default 3600. */
  expirationSeconds?: number;
}

export interface ServiceAccountToken {
  token: string;
  expirationTimestamp: Date;
}

/** Creates the ServiceAccount when missing (no controller-manager runs here) and requests a token for it. */
export async function createServiceAccountToken(
  kubeConfig: KubeConfig,
  options: ServiceAccountTokenOptions,
): Promise<ServiceAccountToken> {
  const expirationSeconds = options.expirationSeconds ?? 3600;
  if (!Number.isInteger(expirationSeconds) || expirationSeconds < 600) {
    throw new Error(
      `expirationSeconds must be an integer >= 600 (the apiserver's minimum), got ${expirationSeconds}`,
    );
  }
  const { namespace, serviceAccount: name } = options;
  const accounts = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`;
  return withClient(kubeConfig, async (client) => {
    try {
      await client.create(accounts, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name } });
    } catch (error) {
      if (!isApiError(error, 409)) throw error;
    }
    const result = await client.create<{ status?: { token?: string; expirationTimestamp?: string } }>(
      `${accounts}/${encodeURIComponent(name)}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { audiences: [options.audience], expirationSeconds },
      },
    );
    const token = result.status?.token;
    if (!token) throw new Error(`the TokenRequest for ${namespace}/${name} returned no token`);
    return { token, expirationTimestamp: new Date(result.status?.expirationTimestamp ?? 0) };
  });
}
