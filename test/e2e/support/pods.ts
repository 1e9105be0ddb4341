import type { KubeClient } from "../../../src/kube/client.ts";
import { probeCommand, sidecarContainer as renderSidecar } from "../../../src/webhook/mutate.ts";
import { sidecarSettings } from "../../../src/webhook/settings.ts";
import type { InjectionTarget, SidecarSettings } from "../../../src/webhook/types.ts";
import type { E2eTarget } from "./target.ts";

/**
 * Pods of the scenarios. `agentPod` adds what the webhook injects (the native sidecar rendered by the webhook's
 * own code, the projected token in the sidecar only, SIDECAR_URL in the app); `injection: "webhook"` leaves that out
 * and labels the pod instead, for when the webhook runs in the cluster.
 */

export const TOKEN_DIR = "/var/run/secrets/agentid/token";
export const TOKEN_FILE = `${TOKEN_DIR}/azure-identity-token`;
export const EMULATOR_CA_CONFIGMAP = "agentid-e2e-emulator-ca";
const NODE = "/usr/local/bin/node";
const SIDECAR_PORT = 5000;

export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    creationTimestamp?: string;
    ownerReferences?: { kind: string }[];
  };
  spec: { serviceAccountName?: string; nodeName?: string };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  started?: boolean;
  restartCount: number;
  state?: {
    running?: { startedAt?: string };
    terminated?: { exitCode: number; reason?: string; startedAt?: string; finishedAt?: string };
    waiting?: { reason?: string; message?: string };
  };
}

const restricted = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/** The sidecar's settings in Microsoft's names, pointing at the emulator and the projected token. */
export function sidecarEnv(target: E2eTarget): { name: string; value: string }[] {
  const env: Record<string, string> = {
    AzureAd__Instance: target.emulator.instance,
    AzureAd__TenantId: target.emulator.tenantId,
    AzureAd__ClientId: target.emulator.blueprintAppId,
    AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
    AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: TOKEN_FILE,
    "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
    "DownstreamApis__graph-app__RequestAppToken": "true",
    Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
    AGENTID_SIDECAR_CA_FILE: "/etc/agentid/emulator-ca/ca.pem",
    AGENTID_SIDECAR_LOG_LEVEL: "debug",
    // As the AgentIdentity renders it (src/api/render.ts).
    Kestrel__Endpoints__Http__Url: `http://127.0.0.1:${SIDECAR_PORT}`,
  };
  return Object.entries(env).map(([name, value]) => ({ name, value }));
}

/**
 * How the kubelet learns that the sidecar is ready before it starts the app:
 * - "injected": exactly what the webhook renders (src/webhook/mutate.ts): a postStart hook that polls /readyz
 *   (`agentid sidecar --probe`); the kubelet starts the next container only after it returned;
 * - "startupProbe": what the webhook injected before (kept to measure against in the same run): an exec
 *   startup probe every second, each attempt a Node process that polls /readyz for up to one second;
 * - "none": no wait at all (the app may start before the sidecar is ready): only to measure what a native
 *   sidecar costs by itself, whatever waits for it.
 */
export type SidecarReadiness = "injected" | "startupProbe" | "none";

/** The webhook's sidecar settings for the e2e image (its defaults: tuned command, resources, user). */
export function e2eSidecarSettings(target: E2eTarget, native = true): SidecarSettings {
  return sidecarSettings({ image: target.images.sidecar, imagePullPolicy: "IfNotPresent", native });
}

/**
 * The native sidecar as the webhook injects it, rendered by the webhook's own code, plus the emulator's CA
 * (a ConfigMap mount the e2e adds: the emulator's certificate is made per run).
 */
export function sidecarContainer(
  target: E2eTarget,
  readiness: SidecarReadiness = "injected",
  native = true,
): Record<string, unknown> {
  const settings = e2eSidecarSettings(target, native);
  const injection: InjectionTarget = {
    identity: {
      name: "e2e",
      namespace: target.agentNamespace,
      generation: 1,
      serviceAccountName: target.agentServiceAccount,
    },
    port: SIDECAR_PORT,
    env: sidecarEnv(target),
    appEnv: [],
    projectedToken: true,
    tokenExpirationSeconds: 3600,
    secretNames: [],
  };
  const container = renderSidecar(injection, settings, settings.defaultResources);
  container.volumeMounts = [
    ...((container.volumeMounts as unknown[] | undefined) ?? []),
    { name: "agentid-emulator-ca", mountPath: "/etc/agentid/emulator-ca", readOnly: true },
  ];
  if (readiness === "none") delete container.lifecycle;
  if (readiness === "startupProbe") {
    delete container.lifecycle;
    container.startupProbe = {
      exec: { command: probeCommand(settings, 1) },
      periodSeconds: 1,
      timeoutSeconds: 5,
      failureThreshold: 120,
    };
  }
  return container;
}

export const TOKEN_VOLUMES = (expirationSeconds: number) => [
  {
    name: "agentid-token",
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: "api://AzureADTokenExchange",
            expirationSeconds,
            path: "azure-identity-token",
          },
        },
      ],
    },
  },
  { name: "agentid-emulator-ca", configMap: { name: EMULATOR_CA_CONFIGMAP } },
];

/**
 * The app: asks the sidecar at SIDECAR_URL for an agent app token, prints one JSON line of what the token says
 * (never the token), then exits or stays up. It runs from the sidecar image, which has Node.
 */
export function appScript(options: { agentAppId: string; stay: boolean }): string {
  return `
const url = process.env.SIDECAR_URL + "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${options.agentAppId}";
const res = await fetch(url);
const body = await res.json();
const token = (body.authorizationHeader ?? "").replace(/^Bearer /, "");
const claims = token ? JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()) : {};
console.log(JSON.stringify({ status: res.status, error: token ? undefined : JSON.stringify(body).slice(0, 600), appid: claims.appid ?? claims.azp, aud: claims.aud, tid: claims.tid, tokenFileVisible: (await import("node:fs")).existsSync("${TOKEN_FILE}") }));
${options.stay ? "setInterval(() => {}, 1 << 30);" : ""}`;
}

export interface AgentPodOptions {
  name: string;
  restartPolicy?: "Always" | "Never";
  /** App container command (default: appScript). */
  appCommand?: string[];
  /** Whether appScript stays up after its request (default true); false for Job-style pods. */
  appStays?: boolean;
  /** "hand": the native sidecar written here; "webhook": labelled for injection; "none": no sidecar at all. */
  injection?: "hand" | "webhook" | "none";
  tokenExpirationSeconds?: number;
  readiness?: SidecarReadiness;
  /**
   * False: the sidecar as the webhook injects it with `--native-sidecar off` (first in `containers`, same
   * postStart wait); a Job-style pod then never completes, so only the start-time measurement uses it.
   */
  native?: boolean;
}

export function agentPod(target: E2eTarget, options: AgentPodOptions): Record<string, unknown> {
  const injection = options.injection ?? "hand";
  const native = options.native ?? true;
  const app = {
    name: "app",
    image: target.images.sidecar,
    imagePullPolicy: "IfNotPresent",
    command: options.appCommand ?? [
      NODE,
      "--input-type=module",
      "-e",
      appScript({ agentAppId: target.emulator.agentAppId, stay: options.appStays ?? true }),
    ],
    env: injection === "hand" ? [{ name: "SIDECAR_URL", value: `http://127.0.0.1:${SIDECAR_PORT}` }] : [],
    securityContext: restricted,
    resources: { requests: { cpu: "10m", memory: "32Mi" } },
  };
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: options.name,
      namespace: target.agentNamespace,
      labels: { app: "agentid-e2e", ...(injection === "webhook" ? { "agentid.io/inject": "true" } : {}) },
    },
    spec: {
      serviceAccountName: target.agentServiceAccount,
      automountServiceAccountToken: false,
      restartPolicy: options.restartPolicy ?? "Always",
      terminationGracePeriodSeconds: 5,
      ...(injection === "hand" && native
        ? { initContainers: [sidecarContainer(target, options.readiness, native)] }
        : {}),
      containers:
        injection === "hand" && !native ? [sidecarContainer(target, options.readiness, native), app] : [app],
      volumes: injection === "hand" ? TOKEN_VOLUMES(options.tokenExpirationSeconds ?? 3600) : [],
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls a pod every 100 ms until `done` says so; the error names the last state seen. */
export async function waitForPod(
  client: KubeClient,
  namespace: string,
  name: string,
  done: (pod: Pod) => boolean,
  timeoutMs = 120_000,
): Promise<Pod> {
  const deadline = Date.now() + timeoutMs;
  let last: Pod | undefined;
  while (Date.now() < deadline) {
    last = await client.getOptional<Pod>(`/api/v1/namespaces/${namespace}/pods/${name}`);
    if (last && done(last)) return last;
    await sleep(100);
  }
  throw new Error(
    `pod ${namespace}/${name} did not get there in ${timeoutMs} ms; last status: ${JSON.stringify(last?.status)}`,
  );
}

export const status = (pod: Pod, name: string): ContainerStatus | undefined =>
  [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (c) => c.name === name,
  );

export const isRunning = (pod: Pod, name: string) => status(pod, name)?.state?.running !== undefined;

/** Creates a pod and measures, by polling every 100 ms, when each step was first seen (ms after the create call). */
export async function createAndTimeToAppRunning(
  client: KubeClient,
  pod: Record<string, unknown>,
): Promise<{ pod: Pod; ms: number; steps: Record<string, number> }> {
  const meta = pod.metadata as { name: string; namespace: string };
  const started = Date.now();
  const steps: Record<string, number> = {};
  const see = (step: string, reached: boolean) => {
    if (reached && steps[step] === undefined) steps[step] = Date.now() - started;
  };
  await client.create(`/api/v1/namespaces/${meta.namespace}/pods`, pod);
  const done = await waitForPod(client, meta.namespace, meta.name, (p) => {
    see("scheduled", p.spec.nodeName !== undefined);
    see("podIP", p.status?.podIP !== undefined);
    see("sidecarRunning", isRunning(p, "agentid-sidecar"));
    see("sidecarStarted", status(p, "agentid-sidecar")?.started === true);
    see("appRunning", isRunning(p, "app"));
    return isRunning(p, "app");
  });
  return { pod: done, ms: Date.now() - started, steps };
}
