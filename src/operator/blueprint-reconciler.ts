import { authorityAllowed, authorityHostOf } from "../api/cloud.ts";
import { API_VERSION, BLUEPRINT_KIND, BLUEPRINT_PLURAL, CONDITION_READY } from "../api/constants.ts";
import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  type AgentIdentityBlueprintStatus,
  federationMode,
} from "../api/types.ts";
import { validateBlueprint } from "../api/validate.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Informer } from "../kube/informer.ts";
import type { WorkResult } from "../kube/queue.ts";
import { type Logger, scrubTokens } from "../lib/log.ts";
import type { ConditionDecision } from "./conditions.ts";
import { mergeConditions } from "./conditions.ts";
import type { EventSink } from "./events.ts";
import { serviceAccountSubject } from "./federation.ts";
import { issuerFor } from "./federation-step.ts";
import type { GraphFederation, ObservedCredential } from "./graph.ts";
import type { IssuerSource } from "./issuer.ts";
import { jsonEqual } from "./status.ts";
import { orphanedCredentials } from "./sweep.ts";

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
  /**
   * Graph mode: the sweep of orphaned credentials. `federation` records what it lists and removes in
   * `observed`, which also holds what the identities' own calls listed.
   */
  sweep?: {
    federation: GraphFederation;
    observed(tenantId: string, clientId: string): ObservedCredential[] | undefined;
    /** The one namespace this manager watches (--namespace): only its subjects are swept. */
    namespace?: string;
    events: EventSink;
    logger: Logger;
    /** Sweep again this often, from what was last listed (no Graph call unless something is orphaned). */
    recheckMs: number;
    /** After a removal: the blueprint's identities check their own credential again. */
    onSwept?(blueprint: string): void;
  };
}

/**
 * Before a blueprint's sweep lists its credentials itself, wait this long for its identities' own calls
 * to list them (a manager that just started or became leader has seen nothing yet).
 */
const FIRST_SWEEP_DEFER_MS = 30_000;

export function createBlueprintReconciler(
  deps: BlueprintReconcilerDeps,
): (name: string) => Promise<WorkResult | undefined> {
  const now = deps.now ?? (() => new Date());
  /** When each blueprint's sweep first found nothing listed for its application (this manager's term). */
  const unlistedSince = new Map<string, number>();

  /**
   * Removes the agentid credentials no identity of the blueprint records (see sweep.ts). Graph is called
   * only when something is to be removed, or once when nothing was listed for the application
   * FIRST_SWEEP_DEFER_MS after the sweep first looked (its identities' own calls usually list it first:
   * then no call at all). Returns how long until the next sweep.
   */
  async function sweep(blueprint: AgentIdentityBlueprint, issuer: string): Promise<WorkResult> {
    const s = deps.sweep;
    if (!s) return {};
    const name = blueprint.metadata.name;
    const { tenantId, clientId } = blueprint.spec;
    const all = deps.identities.list();
    let credentials = s.observed(tenantId, clientId);
    if (!credentials) {
      const t = now().getTime();
      const since = unlistedSince.get(name) ?? t;
      unlistedSince.set(name, since);
      if (t - since < FIRST_SWEEP_DEFER_MS) return { requeueAfterMs: since + FIRST_SWEEP_DEFER_MS - t };
      const listed = await s.federation.list(tenantId, clientId);
      if (!listed.ok) {
        s.logger.warn(
          { blueprint: name, reason: listed.reason },
          `cannot list federated credentials: ${listed.message}`,
        );
        return listed.retry ? { requeue: true } : { requeueAfterMs: s.recheckMs };
      }
      credentials = listed.credentials;
    }
    const orphans = orphanedCredentials(blueprint, credentials, all, issuer, s.namespace);
    for (const orphan of orphans) {
      const removed = await s.federation.remove(tenantId, clientId, orphan.name, orphan.subject);
      if (!removed.ok) {
        // The Event may be dropped (budgets, shutdown) and a credential trusting a deleted ServiceAccount is
        // still in place: the log has a line of its own. The message is Graph's answer, scrubbed of tokens.
        s.logger.warn(
          {
            blueprint: name,
            credential: orphan.name,
            subject: orphan.subject,
            reason: removed.reason,
            retry: removed.retry,
          },
          `cannot remove orphaned federated credential yet: ${scrubTokens(removed.message)}`,
        );
        await s.events.emit({
          kind: BLUEPRINT_KIND,
          namespace: "",
          name,
          ...(blueprint.metadata.uid ? { uid: blueprint.metadata.uid } : {}),
          type: "Warning",
          reason: "OrphanedCredentialNotRemoved",
          message: `Cannot remove orphaned federated credential ${orphan.name} (${orphan.subject}) yet: ${removed.message}`,
        });
        return removed.retry ? { requeue: true } : { requeueAfterMs: s.recheckMs };
      }
      const message = `Removed federated credential ${orphan.name} from application ${clientId}: it trusted ${orphan.subject}, which no AgentIdentity of this blueprint records (deleted without the operator's clean-up).`;
      s.logger.info({ blueprint: name, credential: orphan.name, subject: orphan.subject }, message);
      await s.events.emit({
        kind: BLUEPRINT_KIND,
        namespace: "",
        name,
        ...(blueprint.metadata.uid ? { uid: blueprint.metadata.uid } : {}),
        type: "Normal",
        reason: "OrphanedCredentialRemoved",
        message,
      });
    }
    if (orphans.length > 0) s.onSwept?.(name);
    return { requeueAfterMs: s.recheckMs };
  }

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
    // Before the count below, so that status reports what is left after the sweep.
    const swept =
      workloadIdentity && obs.authorityAllowed && obs.issuer?.ok && federationMode(blueprint) === "Graph"
        ? await sweep(blueprint, obs.issuer.issuer)
        : undefined;
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
    if (jsonEqual(status, blueprint.status ?? {})) return swept;
    // A merge patch of the whole derived status: last writer wins, which is right for a status computed
    // from the caches alone, and no 409 while the cache still holds the previous write.
    // Fields the status no longer has are removed explicitly (null), as a merge patch keeps what it omits.
    await deps.kube.patch(`${blueprintPath(name)}/status`, "merge", {
      status: { ...status, authorityHost: status.authorityHost ?? null, issuer: status.issuer ?? null },
    });
    return obs.issuer && !obs.issuer.ok ? { requeue: true } : swept;
  };
}
