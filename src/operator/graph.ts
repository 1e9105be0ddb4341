import type { TokenCredential } from "@azure/identity";
import { type Dispatcher, request } from "undici";
import { MAX_FEDERATED_CREDENTIALS } from "../api/constants.ts";
import { scrubTokens } from "../lib/log.ts";
import { type FederatedCredential, sameTrust } from "./federation.ts";
import { OutboundFencedError } from "./https.ts";

/**
 * Graph mode: the operator manages a blueprint's federated identity credentials and creates and deletes
 * agent identities, authenticated by its own credential (@azure/identity: workload identity in a cluster,
 * a secret for development) or, for agent creation where the blueprint says so, as the blueprint itself.
 * Failures come back as values with a condition reason and whether retrying can help, never as crashes.
 */

export const GRAPH_SCOPE = "https://graph.microsoft.com/.default";

export type GraphFailure = { ok: false; reason: string; message: string; retry: boolean };

/** A federated credential as Graph lists it (what the operator's decisions need of it). */
export interface ObservedCredential {
  name: string;
  issuer: string;
  subject: string;
}

export type GraphOutcome =
  | {
      ok: true;
      reason: "CredentialCreated" | "CredentialUpToDate" | "CredentialUpdated" | "EquivalentCredentialExists";
      message: string;
      /** How many federated credentials the blueprint holds after this call. */
      count: number;
      /** The blueprint's credentials after this call (from the list the call made anyway). */
      credentials: ObservedCredential[];
    }
  | GraphFailure;

export type RemoveOutcome = { ok: true; reason: "CredentialRemoved"; message: string } | GraphFailure;

export interface GraphFederation {
  /** Every federated credential of the application (one GET). */
  list(
    tenantId: string,
    blueprintClientId: string,
  ): Promise<{ ok: true; credentials: ObservedCredential[] } | GraphFailure>;
  ensure(tenantId: string, blueprintClientId: string, desired: FederatedCredential): Promise<GraphOutcome>;
  /**
   * Removes the credential by name; absent is fine. With `subjectPrefix`, only a credential whose subject
   * starts with it is removed (an operator never removes what another namespace relies on).
   */
  remove(
    tenantId: string,
    blueprintClientId: string,
    name: string,
    subjectPrefix?: string,
  ): Promise<RemoveOutcome>;
}

/** Who signs in to Graph for a call: the manager's own application, or the blueprint (CreateAsManager). */
export type GraphActor = { as: "Manager" } | { as: "Blueprint"; clientId: string; authorityHost: string };

/** `adopted`: found by its marker tag (created before a crash lost the status write), not created now. */
export type AgentCreated = { ok: true; clientId: string; objectId: string; adopted: boolean };
export type AgentRemoved = { ok: true; reason: "AgentDeleted" | "AgentAlreadyGone"; message: string };

export interface GraphAgents {
  /**
   * Idempotent creation under the blueprint, the way cloud controllers make it: first the agent that
   * carries `marker` in its tags (GET /beta/servicePrincipals/microsoft.graph.agentIdentity with
   * $filter=tags/any(t:t eq '<marker>')) is looked up and adopted; only when there is none is one created
   * (POST, with the marker in its tags).
   */
  create(
    tenantId: string,
    blueprintClientId: string,
    displayName: string,
    actor: GraphActor,
    marker: string,
  ): Promise<AgentCreated | GraphFailure>;
  /** DELETE /beta/servicePrincipals/{objectId}; absent is fine. */
  remove(tenantId: string, objectId: string, actor: GraphActor): Promise<AgentRemoved | GraphFailure>;
}

export interface GraphOptions {
  /** Graph's base URL, default https://graph.microsoft.com. */
  baseUrl?: string;
  /** API version segment; blueprints and agent identities are documented under beta. */
  version?: string;
  /** The operator's own credential for a tenant. */
  credentialFor(tenantId: string): TokenCredential;
  /**
   * The blueprint's credential, signed in with the manager's own workload-identity token (agentCreation
   * credential Blueprint); absent when the manager has no token file.
   */
  blueprintCredentialFor?(tenantId: string, clientId: string, authorityHost: string): TokenCredential;
  dispatcher: Dispatcher;
  /**
   * The leadership term the calls belong to (the dispatcher's fence). Checked before a token is asked
   * for: the token request goes through @azure/identity's own HTTP pipeline (its own retries, no
   * deadline of ours), not the fenced dispatcher, and would only lengthen the drain of an ended term.
   */
  fence?: () => AbortSignal | undefined;
}

interface GraphCredential {
  id?: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

interface AgentEntity {
  id?: unknown;
  appId?: unknown;
  agentIdentityBlueprintId?: unknown;
}

class GraphCallError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function failure(error: unknown, permissionHint: string): GraphFailure {
  if (error instanceof GraphCallError) {
    const reason =
      error.status === 401 || error.status === 403
        ? "GraphAccessDenied"
        : error.status === 404
          ? "BlueprintNotFoundInGraph"
          : error.status === 400
            ? "GraphRequestRejected"
            : "GraphError";
    const hint = reason === "GraphAccessDenied" ? ` ${permissionHint}` : "";
    return {
      ok: false,
      reason,
      message: `Microsoft Graph answered HTTP ${error.status} ${error.code}: ${scrubTokens(error.message)}${hint}`,
      // A refusal stays a refusal until someone changes a permission or the spec; only outages are retried.
      retry: error.status >= 500 || error.status === 429 || error.code === "CredentialUnavailable",
    };
  }
  return {
    ok: false,
    reason: "GraphUnreachable",
    message: `Cannot call Microsoft Graph: ${scrubTokens((error as Error).message)}`,
    retry: true,
  };
}

const FIC_HINT =
  "The manager's application needs Application.ReadWrite.OwnedBy and to be an owner of the blueprint (or AgentIdentityBlueprint.AddRemoveCreds.All).";
const AGENT_HINT =
  "Agent identities are looked up with AgentIdentity.Read.All, created with AgentIdentity.Create.All and deleted with AgentIdentity.DeleteRestore.All (the manager's application), or all three with the blueprint's own AgentIdentity.CreateAsManager (agentCreation.credential Blueprint).";

export function createGraphClient(options: GraphOptions): {
  federation: GraphFederation;
  agents: GraphAgents;
} {
  const base = `${(options.baseUrl ?? "https://graph.microsoft.com").replace(/\/+$/, "")}/${options.version ?? "beta"}`;

  function credential(tenantId: string, actor: GraphActor): TokenCredential {
    if (actor.as === "Manager") return options.credentialFor(tenantId);
    if (!options.blueprintCredentialFor)
      // A configuration gap, not an outage: not retried until something changes.
      throw new GraphCallError(
        401,
        "NoBlueprintCredential",
        "agentCreation.credential is Blueprint, but the manager has no workload-identity token file (--graph-token-file) to sign in as the blueprint",
      );
    return options.blueprintCredentialFor(tenantId, actor.clientId, actor.authorityHost);
  }

  async function call<T>(
    tenantId: string,
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: unknown,
    actor: GraphActor = { as: "Manager" },
  ): Promise<T | undefined> {
    if (options.fence?.()?.aborted) throw new OutboundFencedError(new URL(base).origin);
    let token: string;
    try {
      const answer = await credential(tenantId, actor).getToken(GRAPH_SCOPE);
      if (!answer) throw new Error("no token");
      token = answer.token;
    } catch (error) {
      if (error instanceof GraphCallError) throw error;
      // @azure/identity errors carry Entra's AADSTS text, never the assertion; scrub anyway.
      throw new GraphCallError(
        401,
        "CredentialUnavailable",
        `the manager could not get a Graph token: ${scrubTokens((error as Error).message).split("\n")[0]}`,
      );
    }
    const response = await request(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        accept: "application/json",
        ...(body ? { "content-type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : null,
      dispatcher: options.dispatcher,
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) {
      let code = "Unknown";
      let message = `HTTP ${response.statusCode}`;
      try {
        const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
        code = parsed.error?.code ?? code;
        message = parsed.error?.message ?? message;
      } catch {
        // not Graph's JSON
      }
      throw new GraphCallError(response.statusCode, code, message);
    }
    return text ? (JSON.parse(text) as T) : undefined;
  }

  const collection = (appId: string) =>
    `/applications(appId='${encodeURIComponent(appId)}')/federatedIdentityCredentials`;

  async function list(tenantId: string, appId: string): Promise<GraphCredential[]> {
    const answer = await call<{ value?: GraphCredential[] }>(tenantId, "GET", collection(appId));
    return answer?.value ?? [];
  }

  const observed = (credentials: readonly GraphCredential[]): ObservedCredential[] =>
    credentials.map((c) => ({ name: c.name, issuer: c.issuer, subject: c.subject }));

  const federation: GraphFederation = {
    async list(tenantId, appId) {
      try {
        return { ok: true, credentials: observed(await list(tenantId, appId)) };
      } catch (error) {
        return failure(error, FIC_HINT);
      }
    },
    async ensure(tenantId, appId, desired) {
      try {
        const existing = await list(tenantId, appId);
        const mine = existing.find((c) => c.name === desired.name);
        if (mine && sameTrust(mine, desired))
          return {
            ok: true,
            reason: "CredentialUpToDate",
            message: `Federated credential ${desired.name} is on the blueprint.`,
            count: existing.length,
            credentials: observed(existing),
          };
        const equivalent = existing.find((c) => c.name !== desired.name && sameTrust(c, desired));
        if (!mine && equivalent) {
          return {
            ok: true,
            reason: "EquivalentCredentialExists",
            message: `The blueprint already trusts this ServiceAccount through credential ${equivalent.name} (not managed by the operator).`,
            count: existing.length,
            credentials: observed(existing),
          };
        }
        if (mine) {
          // Names are immutable in Graph and ours derive from issuer and subject, so only the audiences can
          // differ: replace the credential.
          await call(tenantId, "DELETE", `${collection(appId)}/${encodeURIComponent(mine.id ?? mine.name)}`);
        } else if (existing.length >= MAX_FEDERATED_CREDENTIALS) {
          return {
            ok: false,
            reason: "CredentialLimitReached",
            message: `The blueprint already has ${existing.length} federated credentials, Entra's limit of ${MAX_FEDERATED_CREDENTIALS}; remove one it no longer needs, then change this AgentIdentity (or its blueprint) to try again.`,
            retry: false,
          };
        }
        await call(tenantId, "POST", collection(appId), {
          name: desired.name,
          issuer: desired.issuer,
          subject: desired.subject,
          audiences: desired.audiences,
          description:
            "Managed by the agentid operator (AgentIdentityBlueprint federation.management Graph).",
        });
        const count = mine ? existing.length : existing.length + 1;
        const credentials = [...observed(existing.filter((c) => c.name !== desired.name)), desired].map(
          (c) => ({ name: c.name, issuer: c.issuer, subject: c.subject }),
        );
        return mine
          ? {
              ok: true,
              reason: "CredentialUpdated",
              message: `Federated credential ${desired.name} was replaced on the blueprint.`,
              count,
              credentials,
            }
          : {
              ok: true,
              reason: "CredentialCreated",
              message: `Federated credential ${desired.name} was added to the blueprint.`,
              count,
              credentials,
            };
      } catch (error) {
        return failure(error, FIC_HINT);
      }
    },
    async remove(tenantId, appId, name, subjectPrefix) {
      try {
        const existing = await list(tenantId, appId);
        const mine = existing.find(
          (c) => c.name === name && (subjectPrefix === undefined || c.subject.startsWith(subjectPrefix)),
        );
        if (mine)
          await call(tenantId, "DELETE", `${collection(appId)}/${encodeURIComponent(mine.id ?? mine.name)}`);
        return {
          ok: true,
          reason: "CredentialRemoved",
          message: `Federated credential ${name} was removed from the blueprint.`,
        };
      } catch (error) {
        if (error instanceof GraphCallError && error.status === 404) {
          return {
            ok: true,
            reason: "CredentialRemoved",
            message: `The blueprint no longer exists; nothing to remove.`,
          };
        }
        return failure(error, FIC_HINT);
      }
    },
  };

  const agents: GraphAgents = {
    async create(tenantId, blueprintClientId, displayName, actor, marker) {
      try {
        // OData string literal: a quote is doubled.
        const filter = `tags/any(t:t eq '${marker.replaceAll("'", "''")}')`;
        const found = await call<{ value?: AgentEntity[] }>(
          tenantId,
          "GET",
          `/servicePrincipals/microsoft.graph.agentIdentity?$filter=${encodeURIComponent(filter)}`,
          undefined,
          actor,
        );
        const mine = (found?.value ?? []).find(
          (a) =>
            typeof a.agentIdentityBlueprintId === "string" &&
            a.agentIdentityBlueprintId.toLowerCase() === blueprintClientId.toLowerCase(),
        );
        if (mine) {
          if (typeof mine.appId !== "string" || typeof mine.id !== "string")
            throw new GraphCallError(502, "BadResponse", "Graph's answer has no appId or id");
          return { ok: true, clientId: mine.appId, objectId: mine.id, adopted: true };
        }
        const created = await call<AgentEntity>(
          tenantId,
          "POST",
          "/servicePrincipals/microsoft.graph.agentIdentity",
          { displayName, agentIdentityBlueprintId: blueprintClientId, tags: [marker] },
          actor,
        );
        if (typeof created?.appId !== "string" || typeof created.id !== "string")
          throw new GraphCallError(502, "BadResponse", "Graph's answer has no appId or id");
        return { ok: true, clientId: created.appId, objectId: created.id, adopted: false };
      } catch (error) {
        return failure(error, AGENT_HINT);
      }
    },
    async remove(tenantId, objectId, actor) {
      try {
        await call(
          tenantId,
          "DELETE",
          `/servicePrincipals/${encodeURIComponent(objectId)}`,
          undefined,
          actor,
        );
        return {
          ok: true,
          reason: "AgentDeleted",
          message: `Agent identity ${objectId} was deleted from Entra.`,
        };
      } catch (error) {
        if (error instanceof GraphCallError && error.status === 404)
          return {
            ok: true,
            reason: "AgentAlreadyGone",
            message: `Agent identity ${objectId} no longer exists.`,
          };
        return failure(error, AGENT_HINT);
      }
    },
  };

  return { federation, agents };
}

/** The federation half alone (kept for callers that need only it). */
export function createGraphFederation(options: GraphOptions): GraphFederation {
  return createGraphClient(options).federation;
}
