import { KubeConfig } from "@kubernetes/client-node";
import { Agent, request } from "undici";
import { inject } from "vitest";
import { createKubeClient, type KubeClient } from "../../../src/kube/client.ts";

/**
 * What an end-to-end scenario runs against, whichever cluster it is: the local one (global-setup.ts) or kind
 * (kind-setup.ts). Scenarios only use this, so both runs share them.
 */
export interface E2eTarget {
  cluster: "local" | "kind";
  kubeconfigPath: string;
  images: {
    sidecar: string;
    manager: string;
    /** The sidecar image plus the emulator's CA (NODE_EXTRA_CA_CERTS), for the webhook to inject. */
    sidecarTrustingEmulator: string;
  };
  emulator: {
    /** AzureAd__Instance as pods see it, e.g. https://198.51.100.1:9443/ */
    instance: string;
    /** CA of the emulator's serving certificate (pods trust it through a ConfigMap). */
    caPem: string;
    tenantId: string;
    blueprintAppId: string;
    agentAppId: string;
    /** Another agent of the same blueprint, asked for only in the rotation scenario. */
    secondAgentAppId: string;
  };
  /** The namespace and ServiceAccount the emulator's federated credential names. */
  agentNamespace: string;
  agentServiceAccount: string;
}

export type E2eSetup = { unavailable: string } | { target: E2eTarget };

declare module "vitest" {
  export interface ProvidedContext {
    agentidE2e: E2eSetup;
  }
}

/** The target, or undefined with the one-line reason the global setup printed. */
export function e2eTarget(): { target?: E2eTarget; unavailable?: string } {
  const setup = inject("agentidE2e");
  return "target" in setup ? { target: setup.target } : { unavailable: setup.unavailable };
}

export function kubeConfigOf(target: E2eTarget): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(target.kubeconfigPath);
  return kc;
}

export function clientOf(target: E2eTarget): KubeClient {
  return createKubeClient(kubeConfigOf(target));
}

/** A container's log as text (the JSON client cannot read it). */
export async function podLog(
  target: E2eTarget,
  namespace: string,
  pod: string,
  container: string,
): Promise<string> {
  const kc = kubeConfigOf(target);
  const opts: { ca?: unknown; cert?: unknown; key?: unknown; headers?: Record<string, unknown> } = {};
  await kc.applyToHTTPSOptions(opts as never);
  const dispatcher = new Agent({
    connect: { ca: opts.ca as string, cert: opts.cert as string, key: opts.key as string },
  });
  try {
    const server = kc.getCurrentCluster()?.server ?? "";
    const res = await request(
      `${server}/api/v1/namespaces/${namespace}/pods/${pod}/log?container=${encodeURIComponent(container)}`,
      {
        dispatcher,
        headers: Object.fromEntries(Object.entries(opts.headers ?? {}).map(([k, v]) => [k, String(v)])),
      },
    );
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(`logs of ${namespace}/${pod}/${container}: ${res.statusCode} ${text}`);
    return text;
  } finally {
    await dispatcher.close();
  }
}
