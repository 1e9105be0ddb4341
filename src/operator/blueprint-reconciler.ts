import { authorityAllowed, authorityHostOf } from "../api/cloud.ts";
import { API_VERSION, BLUEPRINT_PLURAL, CONDITION_READY } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint, AgentIdentityBlueprintStatus } from "../api/types.ts";
import { validateBlueprint } from "../api/validate.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Informer } from "../kube/informer.ts";
import type { WorkResult } from "../kube/queue.ts";
import { scrubTokens } from "../lib/log.ts";
import type { ConditionDecision } from "./conditions.ts";
import { mergeConditions } from "./conditions.ts";
import { serviceAccountSubject } from "./federation.ts";
import { issuerFor } from "./federation-step.ts";
import type { IssuerSource } from "./issuer.ts";
import { jsonEqual } from "./status.ts";

export function blueprintPath(name?: string): string {
  const base = `/apis/${API_VERSION}/${BLUEPRINT_PLURAL}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

export interface BlueprintObservations {
  problems?: string[];
  authorityAllowed: boolean;
  issuer?: { ok: true; issuer: string } | { ok: false; message: string };
  identities: number;
  /** Graph mode: the count Graph last reported; Manual: the subjects bound identities need. */
  federatedCredentials: number;
}

/** The blueprint's status from what was observed: pure. */
export function desiredBlueprintStatus(
  blueprint: AgentIdentityBlueprint,
  obs: BlueprintObservations,
  now: Date,
): AgentIdentityBlueprintStatus {
  const generation = blueprint.metadata.generation ?? 0;
  const d = (status: ConditionDecision["status"], reason: string, message: string): ConditionDecision => ({
    type: CONDITION_READY,
    status,
    reason,
    message,
  });
  let ready: ConditionDecision;
  if (obs.problems && obs.problems.length > 0)
    ready = d(
      "False",
      "InvalidSpec",
      `The blueprint is invalid (is the installed CRD out of date?): ${obs.problems.join("; ")}.`,
    );
  else if (!obs.authorityAllowed)
    ready = d(
      "False",
      "AuthorityHostNotAllowed",
      `Authority host ${blueprint.spec.authorityHost ?? ""} is not in the manager's --allowed-authority-hosts; no identity of this blueprint is served until it is.`,
    );
  else if (obs.issuer && !obs.issuer.ok) ready = d("False", "IssuerUnknown", obs.issuer.message);
  else
    ready = d(
      "True",
      "Ready",
      `The manager can serve identities of this blueprint (${obs.identities} bound).`,
    );
  const status: AgentIdentityBlueprintStatus = {
    observedGeneration: generation,
    identities: obs.identities,
    federatedCredentials: obs.federatedCredentials,
    conditions: mergeConditions(blueprint.status?.conditions, [ready], generation, now),
  };
  if (!obs.problems?.length && obs.authorityAllowed) status.authorityHost = authorityHostOf(blueprint);
  if (obs.issuer?.ok) status.issuer = obs.issuer.issuer;
  return status;
}

export interface BlueprintReconcilerDeps {
  kube: KubeClient;
  blueprints: Informer<AgentIdentityBlueprint>;
  identities: Informer<AgentIdentity>;
  issuer: IssuerSource;
  allowedAuthorityHosts: readonly string[];
  /** What Graph last said about a Graph-mode blueprint's credentials. */
  credentialCount(blueprint: string): number | undefined;
  now?: () => Date;
}

export function createBlueprintReconciler(
  deps: BlueprintReconcilerDeps,
): (name: string) => Promise<WorkResult | undefined> {
  const now = deps.now ?? (() => new Date());
  return async (name) => {
    const blueprint = deps.blueprints.get(undefined, name);
    if (!blueprint || blueprint.metadata.deletionTimestamp) return undefined;
    const bound = deps.identities
      .list()
      .filter((i) => i.spec.blueprintRef.name === name && !i.metadata.deletionTimestamp);
    const valid = validateBlueprint(blueprint);
    const obs: BlueprintObservations = {
      authorityAllowed: authorityAllowed(blueprint, deps.allowedAuthorityHosts),
      identities: bound.length,
      federatedCredentials: 0,
    };
    if (!valid.ok) obs.problems = valid.problems;
    const workloadIdentity = valid.ok && !blueprint.spec.credential?.managedIdentity;
    if (workloadIdentity) {
      try {
        obs.issuer = { ok: true, issuer: await issuerFor(blueprint, deps.issuer) };
      } catch (error) {
        obs.issuer = {
          ok: false,
          message: `Cannot discover the cluster's service-account issuer: ${scrubTokens((error as Error).message)}`,
        };
      }
    }
    const subjects = new Set(
      bound
        .filter((i) => workloadIdentity && !i.spec.clientSecretRef)
        .map((i) => serviceAccountSubject(i.metadata.namespace, i.spec.serviceAccountName)),
    );
    obs.federatedCredentials =
      blueprint.spec.federation?.management === "Graph"
        ? (deps.credentialCount(name) ?? subjects.size)
        : subjects.size;
    const status = desiredBlueprintStatus(blueprint, obs, now());
    if (jsonEqual(status, blueprint.status ?? {})) return undefined;
    // A merge patch of the whole derived status: last writer wins, which is right for a status computed
    // from the caches alone, and no 409 while the cache still holds the previous write.
    // Fields the status no longer has are removed explicitly (null), as a merge patch keeps what it omits.
    await deps.kube.patch(`${blueprintPath(name)}/status`, "merge", {
      status: { ...status, authorityHost: status.authorityHost ?? null, issuer: status.issuer ?? null },
    });
    return obs.issuer && !obs.issuer.ok ? { requeue: true } : undefined;
  };
}
