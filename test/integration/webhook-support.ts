import { randomBytes } from "node:crypto";
import { Registry } from "prom-client";
import { CONDITION_READY } from "../../src/api/constants.ts";
import type {
  AgentIdentity,
  AgentIdentityBlueprint,
  AgentIdentityBlueprintSpec,
  AgentIdentitySpec,
} from "../../src/api/types.ts";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import type { EventRecorder } from "../../src/kube/events.ts";
import { createInformer } from "../../src/kube/informer.ts";
import type { KubeConfigLike } from "../../src/kube/kubeconfig.ts";
import { createLogger, type Logger } from "../../src/lib/log.ts";
import { MWC_PATH, type SecretObject, VWC_PATH } from "../../src/webhook/certificate-manager.ts";
import { createRefusalRecorder } from "../../src/webhook/events.ts";
import {
  createWebhook,
  identityPathOf,
  type NamespaceObject,
  WEBHOOK_CACHES,
  type Webhook,
} from "../../src/webhook/index.ts";
import { secretCache } from "../../src/webhook/serving.ts";
import { renderChart } from "../support/chart.ts";
import {
  type ConnectedControlPlane,
  type ControlPlaneFixture,
  useControlPlane,
} from "../support/controlplane.ts";
import { startedForFile } from "../support/per-file.ts";
import { blueprintBody, ensureCrd, identityBody } from "./operator-support.ts";

/** Runs the real webhook component in this process and registers the chart's configuration for it. */

export const SIDECAR_IMAGE = "ghcr.io/agentid/sidecar:test";

export interface RunningWebhook {
  webhook: Webhook;
  kube: KubeClient;
  /** Label every namespace of the test must carry: the configuration selects only those (tests run in parallel). */
  namespaceLabel: Record<string, string>;
  managerNamespace: string;
  configurationName: string;
  registry: Registry;
  /** The webhook's refusal Event recorder (flush it before reading Events). */
  events: EventRecorder;
  logs: string[];
  stop(): Promise<void>;
}

export type ConfigurationKind = "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration";

/** Where each kind of configuration lives in the API. */
export const CONFIGURATION_PATHS: Record<ConfigurationKind, string> = {
  MutatingWebhookConfiguration: MWC_PATH,
  ValidatingWebhookConfiguration: VWC_PATH,
};

/**
 * One of the chart's webhook configurations (the mutating one, or the guard's validating one), pointed at
 * a loopback URL and limited to this run's namespaces.
 */
export function renderConfiguration(
  name: string,
  managerNamespace: string,
  url: string,
  run: string,
  kind: ConfigurationKind = "MutatingWebhookConfiguration",
): Record<string, unknown> {
  const config = renderChart({ name: "agentid", namespace: managerNamespace }).find((o) => o.kind === kind) as
    | { metadata: { name: string }; webhooks: Array<Record<string, unknown>> }
    | undefined;
  if (!config) throw new Error(`the chart has no ${kind}`);
  config.metadata.name = name;
  for (const webhook of config.webhooks) {
    const path = (webhook.clientConfig as { service: { path: string } }).service.path;
    webhook.clientConfig = { url: `${url}${path}` };
    const selector = webhook.namespaceSelector as { matchExpressions: unknown[] };
    selector.matchExpressions.push({ key: "agentid-test-run", operator: "In", values: [run] });
  }
  return config;
}

/**
 * Polls `check` until it answers true (errors count as not yet), for hooks: expect.poll works only inside
 * a test. The API server applies a new webhook configuration asynchronously, so there is no event to wait on.
 */
export async function pollUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

export function captureLogger(lines: string[]): Logger {
  return createLogger({
    name: "webhook",
    level: "info",
    destination: { write: (line: string) => void lines.push(line) },
  });
}

export async function startTestWebhook(
  cp: ConnectedControlPlane,
  options: {
    run?: string;
    caPropagationMs?: number;
    /** Who the webhook runs as (default: cluster-admin); set-up and clean-up stay cluster-admin. */
    as?: KubeConfigLike;
    /**
     * Another replica of a run that is started already: no configuration of its own, never the leader; it
     * only loads the certificate the leader keeps in the Secret.
     */
    follower?: boolean;
    /** The refusal recorder's clock (its budgets refill by it); default the real one. */
    eventClock?: () => number;
  } = {},
): Promise<RunningWebhook> {
  const run = options.run ?? newRun();
  const kube = createKubeClient(cp.kubeConfig);
  const { managerNamespace, configurationName } = namesOf(run);
  if (!options.follower) {
    await createNamespace(cp.kubeConfig, managerNamespace).catch((error: unknown) => {
      if (!isApiError(error, 409)) throw error;
    });
  }
  const asConfig = options.as ?? cp.kubeConfig;
  const hookKube = options.as ? createKubeClient(options.as) : kube;
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const registry = new Registry();
  const identities = createInformer<AgentIdentity>({
    kubeConfig: asConfig,
    client: hookKube,
    path: "/apis/agentid.io/v1alpha1/agentidentities",
    logger,
  });
  const blueprints = createInformer<AgentIdentityBlueprint>({
    kubeConfig: asConfig,
    client: hookKube,
    path: WEBHOOK_CACHES.blueprints.path,
    logger,
  });
  const namespaces = createInformer<NamespaceObject>({
    kubeConfig: asConfig,
    client: hookKube,
    path: WEBHOOK_CACHES.namespaces.path,
    logger,
  });
  const spec = secretCache(managerNamespace, "agentid-webhook-tls");
  const secrets = createInformer<SecretObject>({
    kubeConfig: asConfig,
    client: hookKube,
    path: spec.path,
    fieldSelector: spec.fieldSelector,
    logger,
  });
  // The refusal recorder the manager builds (src/webhook/component.ts), with its limits.
  const events = createRefusalRecorder({
    kubeConfig: asConfig,
    client: hookKube,
    logger,
    registry,
    ...(options.eventClock ? { now: options.eventClock } : {}),
  });
  const webhook = createWebhook({
    kube: hookKube,
    identities,
    blueprints,
    namespaces,
    secrets,
    events,
    logger,
    registry,
    listen: { host: "127.0.0.1", port: 0 },
    sidecar: { image: SIDECAR_IMAGE, native: "auto" },
    certificates: {
      mode: "self",
      namespace: managerNamespace,
      secretName: "agentid-webhook-tls",
      webhookConfigurationName: configurationName,
      serviceName: "agentid-webhook",
      ipAddresses: ["127.0.0.1"],
      ...(options.caPropagationMs !== undefined ? { caPropagationMs: options.caPropagationMs } : {}),
    },
  });
  const informers = [identities, blueprints, namespaces, secrets];
  await Promise.all(informers.map((i) => i.start()));
  await webhook.start();
  if (!options.follower) {
    for (const [kind, path] of Object.entries(CONFIGURATION_PATHS)) {
      await kube.create(
        path,
        renderConfiguration(
          configurationName,
          managerNamespace,
          `https://127.0.0.1:${webhook.port()}`,
          run,
          kind as ConfigurationKind,
        ),
      );
    }
  }
  const leader = new AbortController();
  const leading = options.follower ? Promise.resolve() : webhook.runLeader(hookKube, leader.signal);
  await pollUntil("the webhook to load its certificate", () => webhook.ready());
  return {
    webhook,
    kube,
    namespaceLabel: { "agentid-test-run": run },
    managerNamespace,
    configurationName,
    registry,
    events,
    logs,
    async stop() {
      leader.abort();
      await leading;
      if (!options.follower) {
        for (const path of Object.values(CONFIGURATION_PATHS)) {
          try {
            await kube.delete(`${path}/${configurationName}`);
          } catch (error) {
            if (!isApiError(error, 404)) throw error;
          }
        }
      }
      for (const informer of informers) informer.stop();
      await events.flush();
      await webhook.close();
      await kube.close();
      if (hookKube !== kube) await hookKube.close();
    },
  };
}

/**
 * The shared control plane for a webhook test file: every per-test namespace carries the run's label, which
 * the run's webhook configuration selects (test files run in parallel on one API server).
 */
export function useWebhookControlPlane(namespacePrefix: string): { run: string; cp: ControlPlaneFixture } {
  const run = newRun();
  return { run, cp: useControlPlane({ namespacePrefix, namespaceLabels: { "agentid-test-run": run } }) };
}

/**
 * Starts a webhook for the whole test file (beforeAll, once the CRDs are there) and stops it afterAll. What
 * it returns reads through to the webhook that runs, so tests use it as a RunningWebhook.
 */
export function useTestWebhook(
  cp: ConnectedControlPlane,
  options: Parameters<typeof startTestWebhook>[1] = {},
): RunningWebhook {
  return startedForFile(
    "the test webhook",
    async () => {
      await ensureCrd(cp.kubeConfig);
      return startTestWebhook(cp, options);
    },
    (webhook) => webhook.stop(),
  );
}

/** The manager namespace and configuration name a run uses. */
export function namesOf(run: string): { managerNamespace: string; configurationName: string } {
  return { managerNamespace: `agentid-system-${run}`, configurationName: `agentid-webhook-${run}` };
}

export function newRun(): string {
  return randomBytes(4).toString("hex");
}

/** A blueprint named after the namespace (blueprints are cluster-scoped), admitting it and AGENT. */
export async function createTestBlueprint(
  kube: KubeClient,
  namespace: string,
  spec: Partial<AgentIdentityBlueprintSpec> = {},
): Promise<AgentIdentityBlueprint> {
  return kube.create<AgentIdentityBlueprint>(
    `/apis/agentid.io/v1alpha1/agentidentityblueprints`,
    blueprintBody(namespace, spec),
  );
}

/** A Ready AgentIdentity of the namespace's blueprint (the operator does not run here: the test writes the status it would). */
export async function createReadyIdentity(
  kube: KubeClient,
  namespace: string,
  name: string,
  spec: Partial<AgentIdentitySpec> = {},
  ready = true,
): Promise<AgentIdentity> {
  const created = await kube.create<AgentIdentity>(
    identityPathOf(namespace),
    identityBody(namespace, name, spec),
  );
  const generation = created.metadata.generation ?? 1;
  return kube.replace<AgentIdentity>(`${identityPathOf(namespace, name)}/status`, {
    ...created,
    status: {
      observedGeneration: generation,
      conditions: [
        {
          type: CONDITION_READY,
          status: ready ? "True" : "False",
          reason: ready ? "Bound" : "FederationNotVerified",
          message: ready ? "test" : "the federated credential is missing",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          observedGeneration: generation,
        },
      ],
    },
  });
}

/** Waits until the API server calls the webhook for this namespace (it sees a new configuration asynchronously). */
export async function waitUntilServed(
  kube: KubeClient,
  namespace: string,
  serviceAccount: string,
): Promise<void> {
  await pollUntil("the API server to call the webhook", async () => {
    const pod = await kube.request<{
      spec: { initContainers?: Array<{ name: string }>; containers: Array<{ name: string }> };
    }>("POST", `/api/v1/namespaces/${namespace}/pods`, {
      query: { dryRun: "All" },
      body: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { generateName: "probe-", labels: { "agentid.io/inject": "true" } },
        spec: { serviceAccountName: serviceAccount, containers: [{ name: "app", image: "app:1" }] },
      },
    });
    const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
    return all.some((c) => c.name === "agentid-sidecar");
  });
}

/**
 * The message the API server sends the client for a refused request (what kubectl prints after "Error
 * from server"), or "admitted" when it was not refused (for expect.poll while a configuration spreads).
 */
export async function refusal(attempt: Promise<unknown>): Promise<string> {
  try {
    await attempt;
  } catch (error) {
    if (isApiError(error)) return error.message;
    throw error;
  }
  return "admitted";
}
