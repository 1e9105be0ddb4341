/**
 * What the pure mutation needs, independent of how the AgentIdentity API spells it: `target.ts` turns an
 * AgentIdentity and its blueprint into an InjectionTarget, `settings.ts` holds the manager's settings.
 */

/** An environment variable of the sidecar: a literal, or a reference (a secret is never a literal). */
export type EnvVar =
  | { name: string; value: string }
  | { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } };

/** Resource name (cpu, memory, ephemeral-storage, ...) → quantity. */
export type ResourceList = Record<string, string>;

export interface Resources {
  requests?: ResourceList;
  limits?: ResourceList;
}

export interface InjectionTarget {
  identity: {
    name: string;
    namespace: string;
    generation: number;
    serviceAccountName: string;
  };
  /** Port of the sidecar on 127.0.0.1. */
  port: number;
  /** The sidecar's rendered environment (Microsoft's names; the listen address on 127.0.0.1). */
  env: EnvVar[];
  /**
   * Environment for the app containers besides SIDECAR_URL (which the mutation sets from the port), e.g.
   * AGENTID_AGENT_ID, the agent the sidecar acts as (for `?AgentIdentity=`). Literal values only.
   */
  appEnv: Array<{ name: string; value: string }>;
  /** Mount the projected service-account token (workload identity) into the sidecar. */
  projectedToken: boolean;
  tokenExpirationSeconds: number;
  /** Resources set on the AgentIdentity, merged over the manager's defaults key by key. */
  resources?: Resources;
  /** Names of Secrets the sidecar reads (a client secret): no other container may mount or read them. */
  secretNames: string[];
}

export interface SidecarSettings {
  image: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** Native sidecar (init container with restartPolicy Always) or the first regular container. */
  native: boolean;
  /** Executable and arguments that start `agentid sidecar` in the image, without Node flags. */
  node: string;
  entrypoint: string;
  /** Node flags and environment the sidecar starts with (src/sidecar/tuning.ts). */
  nodeFlags: readonly string[];
  nodeEnv: Readonly<Record<string, string>>;
  defaultResources: Resources;
  /** UID and GID the sidecar runs as (non-root, Pod Security `restricted`). */
  runAsUser: number;
}
