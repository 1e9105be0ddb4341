import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import { federatedCredentialName, serviceAccountSubject } from "./federation.ts";
import type { GraphFederation, ObservedCredential } from "./graph.ts";
import { blueprintRecord, sameApplication } from "./revoke.ts";

/**
 * The sweep of orphaned federated credentials (Graph mode). Whoever may update an AgentIdentity can strip
 * its `agentid.io/cleanup` finalizer and delete it: the finalizer never runs, and without a sweep the
 * credential would stay trusted in Entra, one more subject each time, past `maxIdentities` and up to the
 * blueprint's 20. Pure: from what Graph last listed and the identities in the cache to what to remove.
 */

/**
 * Whether agentid wrote this credential: its name is the one the operator derives from exactly its issuer
 * and subject (`agentid-<namespace>-<serviceaccount>-<hash of issuer and subject>`), which no other writer
 * produces by chance. (The Azure CLI command shown in Manual mode carries the same name: such a credential
 * is agentid's too.) Anything else, including an `agentid-` prefix with another hash, is never touched.
 */
export function writtenByAgentid(credential: ObservedCredential): boolean {
  return credential.name === federatedCredentialName(credential.issuer, credential.subject);
}

/**
 * The subjects the identities of this blueprint record, in spec or status, including identities being
 * deleted (their finalizer removes their credential) and identities whose status records a credential on
 * this blueprint's application while their spec names another blueprint.
 */
export function recordedSubjects(
  blueprint: AgentIdentityBlueprint,
  identities: readonly AgentIdentity[],
): Set<string> {
  const app = blueprintRecord(blueprint);
  const subjects = new Set<string>();
  for (const identity of identities) {
    const recorded = identity.status?.federatedCredential;
    const onThisApp =
      recorded?.blueprint?.tenantId && recorded.blueprint.clientId
        ? sameApplication(
            { tenantId: recorded.blueprint.tenantId, clientId: recorded.blueprint.clientId },
            app,
          )
        : false;
    if (identity.spec.blueprintRef?.name !== blueprint.metadata.name && !onThisApp) continue;
    subjects.add(serviceAccountSubject(identity.metadata.namespace, identity.spec.serviceAccountName));
    if (recorded?.subject) subjects.add(recorded.subject);
  }
  return subjects;
}

/**
 * The credentials to remove from a Graph-mode blueprint's application: written by agentid, for this
 * cluster's issuer (another cluster sharing the blueprint has its own issuer and its own identities), for
 * a ServiceAccount of a namespace this manager watches (`namespace`, when it watches only one), and whose
 * subject no identity of the blueprint records.
 */
export function orphanedCredentials(
  blueprint: AgentIdentityBlueprint,
  credentials: readonly ObservedCredential[],
  identities: readonly AgentIdentity[],
  issuer: string,
  namespace?: string,
): ObservedCredential[] {
  const recorded = recordedSubjects(blueprint, identities);
  const watched = namespace === undefined ? undefined : serviceAccountSubject(namespace, "");
  return credentials.filter(
    (c) =>
      writtenByAgentid(c) &&
      c.issuer === issuer &&
      c.subject.startsWith("system:serviceaccount:") &&
      (watched === undefined || c.subject.startsWith(watched)) &&
      !recorded.has(c.subject),
  );
}

/**
 * What Graph last listed for each application, kept from the calls the operator makes anyway (every
 * ensure lists the application's credentials; a removal drops one), so that the sweep costs no Graph call
 * of its own while nothing is orphaned.
 */
export interface CredentialObservations {
  get(tenantId: string, clientId: string): ObservedCredential[] | undefined;
  /** `federation` with every answer recorded here. */
  observe(federation: GraphFederation): GraphFederation;
}

export function createCredentialObservations(): CredentialObservations {
  const byApp = new Map<string, ObservedCredential[]>();
  const key = (tenantId: string, clientId: string) => `${tenantId.toLowerCase()}/${clientId.toLowerCase()}`;
  return {
    get: (tenantId, clientId) => byApp.get(key(tenantId, clientId)),
    observe: (federation) => ({
      async list(tenantId, clientId) {
        const outcome = await federation.list(tenantId, clientId);
        if (outcome.ok) byApp.set(key(tenantId, clientId), outcome.credentials);
        return outcome;
      },
      async ensure(tenantId, clientId, desired) {
        const outcome = await federation.ensure(tenantId, clientId, desired);
        if (outcome.ok) byApp.set(key(tenantId, clientId), outcome.credentials);
        return outcome;
      },
      async remove(tenantId, clientId, name, subjectPrefix) {
        const outcome = await federation.remove(tenantId, clientId, name, subjectPrefix);
        const known = byApp.get(key(tenantId, clientId));
        if (outcome.ok && known)
          byApp.set(
            key(tenantId, clientId),
            known.filter(
              (c) => c.name !== name || (subjectPrefix !== undefined && !c.subject.startsWith(subjectPrefix)),
            ),
          );
        return outcome;
      },
    }),
  };
}
