import { isDeepStrictEqual } from "node:util";
import {
  SIDECAR_CONTAINER,
  TOKEN_AUDIENCE,
  TOKEN_FILE,
  TOKEN_MOUNT_PATH,
  TOKEN_VOLUME,
} from "../api/constants.ts";
import { resolveResources } from "./annotations.ts";
import { annotationsOf, type JsonObject, objectAt } from "./raw.ts";
import type { InjectionTarget, Resources, SidecarSettings } from "./types.ts";

/**
 * The sidecar and token volume the mutating webhook renders (pure), and how a pod's sidecar differs from
 * them: the mutation (mutate.ts) and the guard (guard.ts) both judge a sidecar they did not just render
 * (a reinvocation, a copy of an injected pod, a forged one) by the same comparison.
 */

/** File name of the projected token inside TOKEN_MOUNT_PATH. */
export const TOKEN_PATH = TOKEN_FILE.slice(TOKEN_MOUNT_PATH.length + 1);

export function tokenVolume(target: InjectionTarget): Record<string, unknown> {
  return {
    name: TOKEN_VOLUME,
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: TOKEN_AUDIENCE,
            expirationSeconds: target.tokenExpirationSeconds,
            path: TOKEN_PATH,
          },
        },
      ],
    },
  };
}

/** The command that starts the sidecar tuned (no re-execution), and the readiness wait for the same image. */
export function sidecarCommand(settings: SidecarSettings): string[] {
  return [settings.node, ...settings.nodeFlags, settings.entrypoint, "sidecar"];
}

/**
 * How long the postStart hook waits for /readyz. When it gives up, the kubelet kills the sidecar and
 * restarts it (restartPolicy Always); the app does not start meanwhile.
 */
export const POST_START_WAIT_SECONDS = 60;

export function probeCommand(settings: SidecarSettings, timeoutSeconds: number): string[] {
  return [
    settings.node,
    settings.entrypoint,
    "sidecar",
    "--probe",
    "--probe-timeout",
    String(timeoutSeconds),
  ];
}

export function sidecarContainer(
  target: InjectionTarget,
  settings: SidecarSettings,
  resources: Resources,
): Record<string, unknown> {
  const container: Record<string, unknown> = {
    name: SIDECAR_CONTAINER,
    image: settings.image,
  };
  if (settings.imagePullPolicy) container.imagePullPolicy = settings.imagePullPolicy;
  container.command = sidecarCommand(settings);
  container.env = [
    ...Object.entries(settings.nodeEnv).map(([name, value]) => ({ name, value })),
    ...target.env,
  ];
  container.resources = resources;
  container.securityContext = {
    runAsNonRoot: true,
    runAsUser: settings.runAsUser,
    runAsGroup: settings.runAsUser,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
  if (target.projectedToken) {
    container.volumeMounts = [{ name: TOKEN_VOLUME, mountPath: TOKEN_MOUNT_PATH, readOnly: true }];
  }
  // The app must start only once the sidecar answers /readyz. The kubelet probes from the node, which cannot
  // reach 127.0.0.1 inside the pod, so the wait runs in the container: a postStart hook (`agentid sidecar
  // --probe` polls /readyz) that returns once the sidecar is ready. The kubelet starts the next container
  // only after the previous one's postStart hook returned, for a native sidecar (an init container with
  // restartPolicy Always) as for the first regular container. An exec startupProbe was slower in most runs
  // on the test node: its attempts wait for the probe period after the kubelet's status update
  // (docs/cluster.md, "Start-up and pod start times").
  if (settings.native) container.restartPolicy = "Always";
  container.lifecycle = { postStart: { exec: { command: probeCommand(settings, POST_START_WAIT_SECONDS) } } };
  container.terminationMessagePolicy = "FallbackToLogsOnError";
  return container;
}

/**
 * The sidecar fields that decide what code runs in the container that holds the token, and what else it
 * can read or reach: an absent field must be absent (a `lifecycle` hook or an exec probe added to the
 * sidecar would run the author's command there; `NODE_OPTIONS` in `env` would load the author's code; a
 * mount would hand the container their files). Fields that change none of that are not compared, so that
 * the API server's defaults (terminationMessagePath, imagePullPolicy, resources, probe thresholds) and other
 * mutating webhooks' additions (a policy tightening securityContext) do not refuse an injected pod.
 */
const COMPARED_FIELDS = [
  "image",
  "command",
  "args",
  "workingDir",
  "env",
  "envFrom",
  "volumeMounts",
  "volumeDevices",
  "lifecycle",
  "livenessProbe",
  "readinessProbe",
] as const;

/** What differs between the pod's sidecar and the one the mutating webhook renders for this target. */
export function sidecarDifferences(
  pod: unknown,
  sidecar: JsonObject,
  target: InjectionTarget,
  settings: SidecarSettings,
): string[] {
  const resources = resolveResources(settings.defaultResources, target.resources, annotationsOf(pod));
  const rendered = sidecarContainer(target, settings, resources.ok ? resources.value : {}) as JsonObject;
  const wrong: string[] = COMPARED_FIELDS.filter((f) => !isDeepStrictEqual(sidecar[f], rendered[f]));
  // The API server defaults a probe's thresholds; what runs in the container is its exec command.
  const probe = (c: JsonObject) => objectAt(objectAt(c, "startupProbe"), "exec");
  if (!isDeepStrictEqual(probe(sidecar), probe(rendered))) wrong.push("startupProbe");
  if (looserSecurity(objectAt(sidecar, "securityContext"))) wrong.push("securityContext");
  // A terminal or stdin would let `kubectl attach` talk to the process that holds the token.
  for (const field of ["stdin", "stdinOnce", "tty"] as const) if (sidecar[field] === true) wrong.push(field);
  return wrong;
}

/**
 * Whether a sidecar's securityContext grants more than the rendered one (sidecarContainer): privileged, a
 * privilege escalation, root, a writable root file system, an added capability or one not dropped, no
 * seccomp, an unmasked /proc, a Windows host process. Tighter or additional settings (another policy's
 * webhook) are not a difference.
 */
function looserSecurity(sc: JsonObject | undefined): boolean {
  if (sc === undefined) return true;
  const capabilities = objectAt(sc, "capabilities");
  const drop = capabilities?.drop;
  const add = capabilities?.add;
  const seccomp = objectAt(sc, "seccompProfile")?.type;
  return (
    sc.privileged === true ||
    sc.allowPrivilegeEscalation !== false ||
    sc.runAsNonRoot !== true ||
    sc.runAsUser === 0 ||
    sc.runAsGroup === 0 ||
    sc.readOnlyRootFilesystem !== true ||
    !(Array.isArray(drop) && drop.includes("ALL")) ||
    (Array.isArray(add) && add.length > 0) ||
    (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") ||
    (sc.procMount !== undefined && sc.procMount !== "Default") ||
    objectAt(sc, "windowsOptions")?.hostProcess === true
  );
}
