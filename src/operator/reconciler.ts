import { blueprintAdmitsIdentity, namespaceExcluded, namespaceLimitReached } from "../api/admit.ts";
import { authorityAllowed } from "../api/cloud.ts";
import { API_VERSION, CONDITION_VERIFIED, FINALIZER, PLURAL } from "../api/constants.ts";
import { serviceAccountHolder } from "../api/select.ts";
import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  credentialKind,
  federationMode,
} from "../api/types.ts";
import { validateAgentIdentity, validateBlueprint } from "../api/validate.ts";
import { isApiError, type KubeClient } from "../kube/client.ts";
import type { Informer } from "../kube/informer.ts";
import type { WorkResult } from "../kube/queue.ts";
import { type KubeObject, splitKey } from "../kube/store.ts";
import type { Logger } from "../lib/log.ts";
import { observeAgent, removeCreatedAgent } from "./agent.ts";
import { conditionTransitions, findCondition } from "./conditions.ts";
import type { EventSink } from "./events.ts";
import { desiredFederatedCredential, serviceAccountSubject, verificationFingerprint } from "./federation.ts";
import { issuerFor, observeFederation } from "./federation-step.ts";
import type { GraphAgents, GraphFederation } from "./graph.ts";
import type { IssuerSource } from "./issuer.ts";
import {
  blueprintRecord,
  credentialHeir,
  namespaceSubjectPrefix,
  sameApplication,
  type WrittenCredential,
  writtenCredential,
} from "./revoke.ts";
import {
  jitterSeed,
  transientOnsetMs,
  transientRetryDelay,
  type VerificationPolicy,
  verificationDueAt,
} from "./schedule.ts";
import { readReferencedSecret } from "./secret.ts";
import {
  ensureServiceAccount,
  releaseStaleServiceAccounts,
  type ServiceAccountObject,
} from "./service-account.ts";
import { desiredStatus, initialObservations, jsonEqual, type Observations } from "./status.ts";
import type { VerificationResult, Verifier } from "./verify.ts";

export interface NamespaceObject extends KubeObject {
  metadata: KubeObject["metadata"] & { labels?: Record<string, string> };
}

export interface ReconcilerDeps {
  kube: KubeClient;
  identities: Informer<AgentIdentity>;
  blueprints: Informer<AgentIdentityBlueprint>;
  /** Namespace labels, for the blueprints' namespace selectors. */
  namespaces: Informer<NamespaceObject>;
  /** Only ServiceAccounts labelled agentid.io/agentidentity (created by the operator or opted in). */
  serviceAccounts: Informer<ServiceAccountObject>;
  issuer: IssuerSource;
  /** Absent when verification is turned off: then no TokenRequest is ever made. */
  verifier?: Verifier;
  /** Absent when the manager has no Graph credential. */
  graph?: { federation: GraphFederation; agents: GraphAgents };
  /** The manager's --allowed-authority-hosts (for blueprints with cloud Custom). */
  allowedAuthorityHosts: readonly string[];
  /** The manager's own namespace: identities there are refused (NamespaceExcluded), as in kube-system. */
  managerNamespace?: string;
  events: EventSink;
  policy: VerificationPolicy;
  logger: Logger;
  now?: () => Date;
  /** Wait after writing a Graph credential before verifying it (default 15 s). */
  graphPropagationMs?: number;
  /** Re-check a Graph-mode credential this often, so one deleted in Entra is recreated (default 10 min). */
  graphRecheckMs?: number;
  /** Called with the resourceVersion of every status the reconciler wrote, so its own echo can be ignored. */
  onStatusWritten?: (key: string, resourceVersion: string) => void;
  /** Called with how many federated credentials a Graph-mode blueprint holds, whenever Graph told. */
  onCredentialCount?: (blueprint: string, count: number) => void;
}

/** After a new Graph credential, give Entra a moment before proving it (real Entra propagates in seconds). */
const GRAPH_PROPAGATION_MS = 15_000;
export const GRAPH_RECHECK_MS = 10 * 60_000;

export function identityPath(namespace: string, name?: string): string {
  const base = `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/**
 * Whether the identity may use its blueprint, from the caches only (no request): it is not in an excluded
 * namespace (kube-system, the manager's own: `managerNamespace`), the blueprint exists, is
 * valid and usable by this manager (a Custom authority host must be allow-listed), admits the namespace
 * and the agent, the identity holds its ServiceAccount, and it is within the namespace's cap
 * (admits[].maxIdentities). Pure given its inputs.
 */
export function refusal(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint | undefined,
  namespaceLabels: Record<string, string> | undefined,
  sameNamespace: readonly AgentIdentity[],
  allowedAuthorityHosts: readonly string[],
  managerNamespace?: string,
): Observations["refused"] {
  const excluded = namespaceExcluded(identity.metadata.namespace, managerNamespace);
  if (excluded) return excluded;
  const ref = identity.spec.blueprintRef.name;
  if (!blueprint)
    return {
      reason: "BlueprintNotFound",
      message: `AgentIdentityBlueprint ${ref} does not exist; ask the platform team which blueprints this namespace may use.`,
    };
  const valid = validateBlueprint(blueprint);
  if (!valid.ok)
    return {
      reason: "BlueprintNotReady",
      message: `AgentIdentityBlueprint ${ref} is invalid: ${valid.problems.join("; ")}.`,
    };
  if (!authorityAllowed(blueprint, allowedAuthorityHosts))
    return {
      reason: "AuthorityHostNotAllowed",
      message: `AgentIdentityBlueprint ${ref} names authority host ${blueprint.spec.authorityHost ?? ""}, which the manager's --allowed-authority-hosts does not list.`,
    };
  const namespace = {
    name: identity.metadata.namespace,
    ...(namespaceLabels ? { labels: namespaceLabels } : {}),
  };
  const admission = blueprintAdmitsIdentity(blueprint, namespace, identity);
  if (!admission.allowed) return { reason: admission.reason, message: admission.message };
  const holder = serviceAccountHolder(
    sameNamespace,
    identity.metadata.namespace,
    identity.spec.serviceAccountName,
  );
  if (holder && holder.metadata.name !== identity.metadata.name)
    return {
      reason: "ServiceAccountTaken",
      message: `ServiceAccount ${identity.spec.serviceAccountName} is held by the older AgentIdentity ${holder.metadata.name}; a ServiceAccount carries one identity. Create a new AgentIdentity with another serviceAccountName (it is immutable) and delete this one.`,
    };
  // Last: only identities that pass everything above count towards the namespace's cap.
  return namespaceLimitReached(blueprint, namespace, identity, sameNamespace);
}

/** Whether anything in Entra is written for this identity, so that a finalizer must guard its deletion. */
function needsCleanup(identity: AgentIdentity, blueprint: AgentIdentityBlueprint): boolean {
  const graphCredential =
    federationMode(blueprint) === "Graph" && credentialKind(identity, blueprint) === "workloadIdentity";
  return graphCredential || identity.spec.agent.create !== undefined;
}

export interface IdentityReconciler {
  (key: string): Promise<WorkResult | undefined>;
  /**
   * The watch delivered this identity's own status write: the cache is current again, so the object the
   * write returned is no longer needed (without this, one extra copy of every identity stays in memory
   * until its next reconcile).
   */
  forgetWrite(key: string): void;
}

export function createReconciler(deps: ReconcilerDeps): IdentityReconciler {
  const now = deps.now ?? (() => new Date());
  /**
   * The object each status write returned, with the version it replaced. Until the watch delivers the
   * write, the cache still holds the replaced version; reconciling from it would only end in a 409.
   */
  const recent = new Map<string, { over: string; written: AgentIdentity }>();
  /**
   * Entra's Retry-After per identity key (the fingerprint it was for, and the time before which not to
   * verify again). Only in memory: after a restart the backoff derived from the status still applies.
   */
  const retryAfters = new Map<string, { fingerprint: string; notBeforeMs: number }>();
  /**
   * Permanent refusals (Graph said no, the limit is reached), by identity, with the generations they were
   * met at: not retried until the identity's or the blueprint's spec changes.
   */
  const permanent = new Map<
    string,
    { at: string; agent?: Observations["agent"]; federation?: Observations["federation"] }
  >();

  const blueprintOf = (identity: AgentIdentity) =>
    deps.blueprints.get(undefined, identity.spec.blueprintRef.name);

  async function removeFinalizer(identity: AgentIdentity): Promise<void> {
    const finalizers = identity.metadata.finalizers ?? [];
    const index = finalizers.indexOf(FINALIZER);
    if (index < 0) return;
    // test+remove: fails with 422 instead of removing someone else's finalizer if the list moved.
    await deps.kube.patch(identityPath(identity.metadata.namespace, identity.metadata.name), "json", [
      { op: "test", path: `/metadata/finalizers/${index}`, value: FINALIZER },
      { op: "remove", path: `/metadata/finalizers/${index}` },
    ]);
  }

  async function warn(identity: AgentIdentity, reason: string, message: string): Promise<void> {
    await deps.events.emit({ ...ref(identity), type: "Warning", reason, message });
  }

  /** Whether another identity still relies on the credential on `blueprintName` (see credentialHeir). */
  function heirOf(identity: AgentIdentity, blueprintName: string): AgentIdentity | undefined {
    const { namespace } = identity.metadata;
    return credentialHeir(
      identity,
      deps.identities.list(namespace),
      blueprintName,
      deps.blueprints.get(undefined, blueprintName),
      deps.namespaces.get(undefined, namespace)?.metadata.labels,
    );
  }

  /**
   * Removes credentials by name from one blueprint application, checked, with an event per removal.
   * Only credentials for a ServiceAccount of the identity's namespace are touched, whatever status says.
   */
  async function removeCredentials(
    identity: AgentIdentity,
    graph: GraphFederation,
    target: WrittenCredential["blueprint"],
    names: Iterable<string>,
  ): Promise<{ ok: true; message: string } | { ok: false; reason: string; message: string; retry: boolean }> {
    const messages: string[] = [];
    for (const name of names) {
      const outcome = await graph.remove(
        target.tenantId,
        target.clientId,
        name,
        namespaceSubjectPrefix(identity.metadata.namespace),
      );
      if (!outcome.ok) {
        await warn(
          identity,
          outcome.reason,
          `Cannot remove the federated credential yet: ${outcome.message}`,
        );
        return { ok: false, reason: outcome.reason, message: outcome.message, retry: outcome.retry };
      }
      messages.push(outcome.message);
      await deps.events.emit({
        ...ref(identity),
        type: "Normal",
        reason: outcome.reason,
        message: `${outcome.message} (blueprint ${target.name}, application ${target.clientId})`,
      });
    }
    return { ok: true, message: messages.join(" ") };
  }

  async function finalize(identity: AgentIdentity): Promise<WorkResult | undefined> {
    if (!identity.metadata.finalizers?.includes(FINALIZER)) return undefined;
    const blueprint = blueprintOf(identity);
    const { namespace } = identity.metadata;
    const subject = serviceAccountSubject(namespace, identity.spec.serviceAccountName);
    const written = writtenCredential(identity, blueprint);
    // Each application the credential may be on: the current blueprint's and the one status recorded.
    const targets: { blueprint: WrittenCredential["blueprint"]; names: Set<string> }[] = [];
    if (
      blueprint &&
      federationMode(blueprint) === "Graph" &&
      credentialKind(identity, blueprint) === "workloadIdentity"
    ) {
      // The deterministic name, recomputed; the one status recorded too, but only for exactly this subject.
      const names = new Set<string>();
      try {
        names.add(
          desiredFederatedCredential(
            namespace,
            identity.spec.serviceAccountName,
            await issuerFor(blueprint, deps.issuer),
          ).name,
        );
      } catch {
        // Issuer unknown right now: status's name below still covers the usual case.
      }
      const recorded = identity.status?.federatedCredential;
      if (recorded?.name && recorded.subject === subject) names.add(recorded.name);
      targets.push({ blueprint: blueprintRecord(blueprint), names });
    }
    if (written && !targets.some((t) => sameApplication(t.blueprint, written.blueprint)))
      targets.push({ blueprint: written.blueprint, names: new Set([written.name]) });
    for (const target of targets) {
      // Another live, admitted identity of this ServiceAccount and blueprint now relies on the same credential.
      if (heirOf(identity, target.blueprint.name)) continue;
      if (!deps.graph) {
        await warn(
          identity,
          "CredentialLeftInPlace",
          `The manager has no Graph credential, so the federated credential for ${subject} stays on blueprint ${target.blueprint.clientId}; remove it by hand if no longer needed.`,
        );
        continue;
      }
      const removed = await removeCredentials(
        identity,
        deps.graph.federation,
        target.blueprint,
        target.names,
      );
      if (!removed.ok) return { requeue: true };
    }
    const agent = identity.status?.agent;
    if (agent?.created && agent.objectId) {
      if (identity.spec.agent.deletionPolicy === "Retain") {
        await deps.events.emit({
          ...ref(identity),
          type: "Normal",
          reason: "AgentRetained",
          message: `Agent identity ${agent.clientId} stays in Entra (deletionPolicy Retain).`,
        });
      } else if (!blueprint || !deps.graph) {
        await warn(
          identity,
          "AgentLeftInPlace",
          `Agent identity ${agent.clientId} cannot be deleted (${blueprint ? "the manager has no Graph credential" : `blueprint ${identity.spec.blueprintRef.name} is gone`}); delete it in Entra by hand.`,
        );
      } else {
        const outcome = await removeCreatedAgent(deps.graph.agents, blueprint, agent.objectId);
        if (!outcome.ok) {
          await warn(
            identity,
            outcome.reason,
            `Cannot delete agent identity ${agent.clientId} yet: ${outcome.message}`,
          );
          return { requeue: true };
        }
        await deps.events.emit({
          ...ref(identity),
          type: "Normal",
          reason: outcome.reason,
          message: outcome.message,
        });
      }
    }
    await removeFinalizer(identity);
    permanent.delete(keyOfIdentity(identity));
    return undefined;
  }

  /**
   * A refused identity that the operator wrote a credential for: the blueprint must stop trusting its
   * ServiceAccount now, not on deletion. Status alone says where the credential is (no issuer discovery,
   * no other call outside the cluster); the agent the operator created stays until the identity is deleted,
   * and so does the finalizer then. Re-admission writes the credential (and the finalizer) again.
   */
  async function revoke(
    identity: AgentIdentity,
    blueprint: AgentIdentityBlueprint | undefined,
    obs: Observations,
  ): Promise<WorkResult | undefined> {
    const written = writtenCredential(identity, blueprint);
    if (written) {
      const subject = serviceAccountSubject(identity.metadata.namespace, identity.spec.serviceAccountName);
      const heir = heirOf(identity, written.blueprint.name);
      if (heir) {
        obs.federation = {
          state: "revoked",
          reason: "CredentialKeptForHeir",
          message: `The federated credential for ${subject} stays on blueprint ${written.blueprint.name}: AgentIdentity ${heir.metadata.name} relies on it.`,
        };
      } else if (!deps.graph) {
        const message = `The manager has no Graph credential, so the federated credential for ${subject} stays on blueprint ${written.blueprint.clientId}; remove it by hand.`;
        await warn(identity, "CredentialLeftInPlace", message);
        obs.federation = { state: "revoked", reason: "CredentialLeftInPlace", message };
      } else {
        const removed = await removeCredentials(identity, deps.graph.federation, written.blueprint, [
          written.name,
        ]);
        if (!removed.ok) {
          // Status keeps the record (graphFailed carries it), so the removal is retried with backoff.
          const recorded = identity.status?.federatedCredential;
          obs.federation = {
            state: "graphFailed",
            ...(recorded ? { credential: recorded } : {}),
            reason: "CredentialNotRevoked",
            message: `Cannot remove the federated credential ${written.name} from blueprint ${written.blueprint.name} yet: ${removed.message}`,
            retry: removed.retry,
          };
          await writeStatus(identity, obs);
          return { requeue: true };
        }
        obs.federation = {
          state: "revoked",
          reason: "CredentialRemoved",
          message: `The federated credential for ${subject} was removed from blueprint ${written.blueprint.name}.`,
        };
      }
    }
    identity = await writeStatus(identity, obs);
    // A created agent is still to be deleted when the identity goes: the finalizer stays for it.
    if (!identity.status?.agent?.created) await removeFinalizer(identity);
    return undefined;
  }

  /** Writes the status the observations call for, unless the object already says exactly that. */
  async function writeStatus(identity: AgentIdentity, obs: Observations): Promise<AgentIdentity> {
    const { namespace, name } = identity.metadata;
    const status = desiredStatus(identity, obs, now());
    if (jsonEqual(status, identity.status ?? {})) return identity;
    const written = await deps.kube.replace<AgentIdentity>(`${identityPath(namespace, name)}/status`, {
      ...identity,
      status,
    });
    if (written?.metadata.resourceVersion) {
      deps.onStatusWritten?.(`${namespace}/${name}`, written.metadata.resourceVersion);
      if (identity.metadata.resourceVersion) {
        recent.set(`${namespace}/${name}`, { over: identity.metadata.resourceVersion, written });
      }
    }
    for (const t of conditionTransitions(identity.status?.conditions, status.conditions ?? [])) {
      // A first Unknown is not news; every other transition is.
      if (t.from === undefined && t.to === "Unknown") continue;
      await deps.events.emit({
        ...ref(identity),
        type: t.to === "False" ? "Warning" : "Normal",
        reason: t.reason,
        message: `${t.type} is ${t.to}: ${t.message}`,
      });
    }
    return written ?? identity;
  }

  async function reconcileOnce(identity: AgentIdentity): Promise<WorkResult | undefined> {
    const { namespace, name } = identity.metadata;
    const key = keyOfIdentity(identity);
    if (identity.metadata.deletionTimestamp) return finalize(identity);
    const validation = validateAgentIdentity(identity);
    const obs = initialObservations();
    if (!validation.ok) {
      await writeStatus(identity, { ...obs, invalid: validation.problems });
      return undefined;
    }
    const blueprint = blueprintOf(identity);
    // Everything up to here comes from the caches: a refused identity costs no request outside the cluster.
    obs.refused = refusal(
      identity,
      blueprint,
      deps.namespaces.get(undefined, namespace)?.metadata.labels,
      deps.identities.list(namespace),
      deps.allowedAuthorityHosts,
      deps.managerNamespace,
    );
    if (obs.refused || !blueprint) {
      if (identity.metadata.finalizers?.includes(FINALIZER)) return revoke(identity, blueprint, obs);
      await writeStatus(identity, obs);
      return undefined;
    }
    obs.credential = credentialKind(identity, blueprint);
    const hasFinalizer = identity.metadata.finalizers?.includes(FINALIZER) ?? false;
    if (needsCleanup(identity, blueprint) && !hasFinalizer) {
      // Before writing anything to Entra, so that a deletion can never skip the clean-up.
      const finalizers = [...(identity.metadata.finalizers ?? []), FINALIZER];
      identity = await deps.kube.patch<AgentIdentity>(identityPath(namespace, name), "merge", {
        metadata: { finalizers, resourceVersion: identity.metadata.resourceVersion },
      });
    } else if (!needsCleanup(identity, blueprint) && hasFinalizer && !identity.status?.agent?.created) {
      // Manual mode and a named agent: nothing in Entra is the operator's to remove.
      await removeFinalizer(identity);
      return { requeueAfterMs: 0 };
    }

    const live = new Set(
      deps.identities
        .list(namespace)
        .filter((i) => !i.metadata.deletionTimestamp && i.metadata.uid)
        .map((i) => i.metadata.uid as string),
    );
    obs.serviceAccount = await ensureServiceAccount(
      deps.kube,
      identity,
      deps.serviceAccounts.get(namespace, identity.spec.serviceAccountName),
      live,
    );
    if (obs.serviceAccount.state === "ready") {
      await releaseStaleServiceAccounts(deps.kube, identity, deps.serviceAccounts.list(namespace));
    }
    let secretValue: string | undefined;
    if (identity.spec.clientSecretRef) {
      if (deps.verifier) {
        const secret = await readReferencedSecret(deps.kube, identity);
        obs.secret = secret.observation;
        secretValue = secret.value;
      } else obs.secret = { state: "notChecked" };
    }

    const at = `${identity.metadata.generation ?? 0}/${blueprint.metadata.generation ?? 0}`;
    const stuck = permanent.get(key);
    if (stuck && stuck.at !== at) permanent.delete(key);
    const remembered = stuck?.at === at ? stuck : undefined;

    const saReady = obs.serviceAccount.state === "ready";
    obs.agent =
      remembered?.agent ??
      (saReady ? await observeAgent(identity, blueprint, deps.graph?.agents) : { state: "skipped" });
    if (obs.agent.state === "failed" && !obs.agent.retry) permanent.set(key, { at, agent: obs.agent });
    if (obs.agent.state === "known" && obs.agent.status.created && !identity.status?.agent?.created) {
      // Record a new agent at once (a crash before this write is covered by the marker tag's lookup).
      identity = await writeStatus(identity, obs);
      if (obs.agent.adopted)
        await deps.events.emit({
          ...ref(identity),
          type: "Normal",
          reason: "AgentAdopted",
          message: `Agent identity ${obs.agent.status.clientId} carries this AgentIdentity's marker tag (created before the manager could record it): adopted, not created again.`,
        });
    }

    let fresh = false;
    let issuer: string | undefined;
    if (!saReady || obs.agent.state !== "known" || obs.secret.state === "problem") {
      obs.federation = {
        state: "skipped",
        message: "Waiting for the ServiceAccount and the agent identity.",
      };
    } else if (remembered?.federation) {
      obs.federation = remembered.federation;
    } else {
      const federation = await observeFederation(identity, blueprint, {
        issuer: deps.issuer,
        ...(deps.graph ? { graph: deps.graph.federation } : {}),
      });
      obs.federation = federation.obs;
      fresh = federation.fresh;
      issuer = federation.issuer;
      if (federation.count !== undefined) deps.onCredentialCount?.(blueprint.metadata.name, federation.count);
      if (obs.federation.state === "graphFailed" && !obs.federation.retry)
        permanent.set(key, { at, federation: obs.federation });
    }

    let requeueAfterMs: number | undefined;
    const blocked =
      obs.serviceAccount.state !== "ready" ||
      obs.secret.state === "problem" ||
      obs.agent.state !== "known" ||
      obs.federation.state === "skipped" ||
      obs.federation.state === "issuerUnknown" ||
      obs.federation.state === "graphFailed";
    if (!blocked && obs.agent.state === "known" && obs.serviceAccount.state === "ready") {
      const kind = obs.credential;
      if (!deps.verifier) obs.verification = { state: "disabled" };
      else if (kind === "managedIdentity") {
        obs.verification = {
          state: "notVerifiable",
          message:
            "A managed identity's token exists only on Azure compute; the sidecar proves it at run time.",
        };
      } else if (fresh) {
        obs.verification = {
          state: "pending",
          message: "The federated credential was just written; verifying shortly.",
        };
        requeueAfterMs = deps.graphPropagationMs ?? GRAPH_PROPAGATION_MS;
      } else {
        const agentClientId = obs.agent.status.clientId ?? "";
        const fingerprint = verificationFingerprint(identity, blueprint, agentClientId, issuer);
        const asked = retryAfters.get(key);
        const notBeforeMs = asked?.fingerprint === fingerprint ? asked.notBeforeMs : 0;
        const dueAt = verificationDueAt(identity, fingerprint, deps.policy, notBeforeMs);
        const t = now().getTime();
        if (dueAt <= t) {
          const sa =
            obs.serviceAccount.object ??
            deps.serviceAccounts.get(namespace, identity.spec.serviceAccountName);
          const result = await deps.verifier.verify(
            { identity, blueprint, agentClientId },
            kind === "clientSecret"
              ? { kind: "clientSecret", secret: secretValue ?? "" }
              : {
                  kind: "serviceAccountToken",
                  serviceAccount: {
                    name: identity.spec.serviceAccountName,
                    ...(sa?.metadata.labels ? { labels: sa.metadata.labels } : {}),
                  },
                },
            {
              tenantId: blueprint.spec.tenantId,
              blueprintClientId: blueprint.spec.clientId,
              agentId: agentClientId,
              ...(obs.federation.state === "manual" || obs.federation.state === "graph"
                ? { azCommand: obs.federation.credential.azCommand }
                : {}),
            },
          );
          if (isTransient(result)) {
            // A passing failure is tried again in seconds, growing with how long it has lasted (read from
            // the status, so a restart or a new leader continues the same backoff): not the long wait
            // meant for a person, unless it has lasted that long.
            const time = new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
            const attemptMs = Date.parse(time);
            const previous = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
            const onset = transientOnsetMs(
              previous,
              result.state === "unreachable" ? "Unknown" : "False",
              attemptMs,
              identity.status?.lastVerification?.transientSince,
            );
            const retryAfterMs = result.state === "unreachable" ? result.retryAfterMs : undefined;
            const delayMs = transientRetryDelay(
              {
                failingForMs: attemptMs - onset,
                seed: jitterSeed(fingerprint, time),
                ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
              },
              deps.policy,
            );
            if (retryAfterMs !== undefined)
              retryAfters.set(key, { fingerprint, notBeforeMs: attemptMs + delayMs });
            else retryAfters.delete(key);
            const transientSince = new Date(onset).toISOString().replace(/\.\d{3}Z$/, "Z");
            const noted = withRetryNote(result, delayMs);
            obs.verification =
              noted.state === "failed" || noted.state === "unreachable"
                ? { ...noted, fingerprint, time, transientSince }
                : { ...noted, fingerprint, time };
            requeueAfterMs = delayMs;
          } else {
            retryAfters.delete(key);
            obs.verification = { ...result, fingerprint };
            requeueAfterMs = result.state === "verified" ? deps.policy.intervalMs : deps.policy.retryMs;
          }
        } else {
          obs.verification = { state: "unchanged" };
          requeueAfterMs = dueAt - t;
        }
      }
    }
    secretValue = undefined;
    if (obs.federation.state === "graph")
      requeueAfterMs = Math.min(
        requeueAfterMs ?? Number.POSITIVE_INFINITY,
        deps.graphRecheckMs ?? GRAPH_RECHECK_MS,
      );

    await writeStatus(identity, obs);
    const retry =
      (obs.federation.state === "graphFailed" && obs.federation.retry) ||
      (obs.agent.state === "failed" && obs.agent.retry) ||
      obs.federation.state === "issuerUnknown" ||
      obs.serviceAccount.state === "error" ||
      // Secrets are not watched (least privilege: no list/watch on Secrets), so a missing or incomplete
      // one is looked at again with the queue's backoff (0.5 s doubling to 5 min) until it is in order.
      obs.secret.state === "problem";
    if (retry) return { requeue: true };
    return requeueAfterMs !== undefined ? { requeueAfterMs: Math.max(requeueAfterMs, 100) } : undefined;
  }

  async function reconcile(key: string): Promise<WorkResult | undefined> {
    const { namespace, name } = splitKey(key);
    if (!namespace) return undefined;
    let identity = deps.identities.get(namespace, name);
    const mine = recent.get(key);
    if (mine && identity?.metadata.resourceVersion === mine.over) identity = mine.written;
    else recent.delete(key);
    if (!identity) retryAfters.delete(key);
    for (let attempt = 0; identity && attempt < 3; attempt++) {
      try {
        return await reconcileOnce(identity);
      } catch (error) {
        if (!isApiError(error, 409)) throw error;
        // Someone wrote in between: re-read and decide again on the fresh object.
        identity = await deps.kube.getOptional<AgentIdentity>(identityPath(namespace, name));
      }
    }
    return identity ? { requeue: true } : undefined;
  }
  return Object.assign(reconcile, { forgetWrite: (key: string) => void recent.delete(key) });
}

/** A verification outcome that Entra also gives for a passing failure (schedule.ts, entra-errors.ts). */
function isTransient(result: VerificationResult): boolean {
  return result.state === "unreachable" || (result.state === "failed" && result.failure.transient === true);
}

/** Says in the condition's message when the next attempt is, so nobody waits for a fix that is automatic. */
function withRetryNote(result: VerificationResult, delayMs: number): VerificationResult {
  const note = ` Retrying with backoff, next in about ${Math.max(1, Math.round(delayMs / 1000))} s.`;
  if (result.state === "failed")
    return { ...result, failure: { ...result.failure, message: result.failure.message + note } };
  if (result.state === "unreachable") return { ...result, message: result.message + note };
  return result;
}

function keyOfIdentity(identity: AgentIdentity): string {
  return `${identity.metadata.namespace}/${identity.metadata.name}`;
}

function ref(identity: AgentIdentity) {
  return {
    namespace: identity.metadata.namespace,
    name: identity.metadata.name,
    ...(identity.metadata.uid ? { uid: identity.metadata.uid } : {}),
  };
}
