import type { TokenCredential } from "@azure/identity";
import { type Dispatcher, request } from "undici";
import { MAX_FEDERATED_CREDENTIALS } from "../api/constants.ts";
import { scrubTokens } from "../lib/log.ts";
import { type FederatedCredential, sameTrust } from "./federation.ts";

/**
 * Graph mode: the operator manages the blueprint's federated identity credential itself, authenticated
 * by its own credential (@azure/identity: workload identity in a cluster, a secret for development).
 * Failures come back as values with a condition reason, never as crashes.
 */

export const GRAPH_SCOPE = "https://graph.microsoft.com/.default";

export type GraphOutcome =
  | {
      ok: true;
      reason: "CredentialCreated" | "CredentialUpToDate" | "CredentialUpdated" | "EquivalentCredentialExists";
      message: string;
    }
  | { ok: false; reason: string; message: string; retry: boolean };

export interface GraphFederation {
  ensure(tenantId: string, blueprintClientId: string, desired: FederatedCredential): Promise<GraphOutcome>;
  /** Removes the credential by name; absent is fine. */
  remove(
    tenantId: string,
    blueprintClientId: string,
    name: string,
  ): Promise<GraphOutcome | { ok: true; reason: "CredentialRemoved"; message: string }>;
}

export interface GraphOptions {
  /** Graph's base URL, default https://graph.microsoft.com. */
  baseUrl?: string;
  /** API version segment; blueprints are documented under beta. */
  version?: string;
  /** The operator's own credential for a tenant. */
  credentialFor(tenantId: string): TokenCredential;
  dispatcher: Dispatcher;
}

interface GraphCredential {
  id?: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
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

function failure(error: unknown): GraphOutcome {
  if (error instanceof GraphCallError) {
    const reason =
      error.status === 401 || error.status === 403
        ? "GraphAccessDenied"
        : error.status === 404
          ? "BlueprintNotFoundInGraph"
          : "GraphError";
    const hint =
      reason === "GraphAccessDenied"
        ? " The manager's identity needs the Graph app role AgentIdentityBlueprint.AddRemoveCreds.All (or Application.ReadWrite.All)."
        : "";
    return {
      ok: false,
      reason,
      message: `Microsoft Graph answered HTTP ${error.status} ${error.code}: ${scrubTokens(error.message)}${hint}`,
      retry: error.status >= 500 || error.status === 429,
    };
  }
  return {
    ok: false,
    reason: "GraphUnreachable",
    message: `Cannot call Microsoft Graph: ${scrubTokens((error as Error).message)}`,
    retry: true,
  };
}

export function createGraphFederation(options: GraphOptions): GraphFederation {
  const base = `${(options.baseUrl ?? "https://graph.microsoft.com").replace(/\/+$/, "")}/${options.version ?? "beta"}`;

  async function call<T>(
    tenantId: string,
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: unknown,
  ): Promise<T | undefined> {
    let token: string;
    try {
      const answer = await options.credentialFor(tenantId).getToken(GRAPH_SCOPE);
      if (!answer) throw new Error("no token");
      token = answer.token;
    } catch (error) {
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

  return {
    async ensure(tenantId, appId, desired) {
      try {
        const existing = await list(tenantId, appId);
        const mine = existing.find((c) => c.name === desired.name);
        if (mine && sameTrust(mine, desired))
          return {
            ok: true,
            reason: "CredentialUpToDate",
            message: `Federated credential ${desired.name} is on the blueprint.`,
          };
        const equivalent = existing.find((c) => c.name !== desired.name && sameTrust(c, desired));
        if (!mine && equivalent) {
          return {
            ok: true,
            reason: "EquivalentCredentialExists",
            message: `The blueprint already trusts this ServiceAccount through credential ${equivalent.name} (not managed by the operator).`,
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
            message: `The blueprint already has ${existing.length} federated credentials, Graph's limit of ${MAX_FEDERATED_CREDENTIALS}; remove one it no longer needs.`,
            retry: false,
          };
        }
        await call(tenantId, "POST", collection(appId), {
          name: desired.name,
          issuer: desired.issuer,
          subject: desired.subject,
          audiences: desired.audiences,
          description: "Managed by the agentid operator (AgentIdentity federation.mode Graph).",
        });
        return mine
          ? {
              ok: true,
              reason: "CredentialUpdated",
              message: `Federated credential ${desired.name} was replaced on the blueprint.`,
            }
          : {
              ok: true,
              reason: "CredentialCreated",
              message: `Federated credential ${desired.name} was added to the blueprint.`,
            };
      } catch (error) {
        return failure(error);
      }
    },
    async remove(tenantId, appId, name) {
      try {
        const existing = await list(tenantId, appId);
        const mine = existing.find((c) => c.name === name);
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
        return failure(error);
      }
    },
  };
}
