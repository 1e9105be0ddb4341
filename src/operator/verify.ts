import { type Dispatcher, request } from "undici";
import { authorityHostOf } from "../api/cloud.ts";
import {
  CLIENT_ASSERTION_TYPE,
  EXCHANGE_SCOPE,
  LABEL_SERVICE_ACCOUNT_BINDING,
  TOKEN_AUDIENCE,
} from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import { isApiError, type KubeClient } from "../kube/client.ts";
import { scrubTokens } from "../lib/log.ts";
import {
  classifyEntraError,
  type EntraError,
  type HintContext,
  type VerificationFailure,
} from "./entra-errors.ts";
import { parseRetryAfter } from "./schedule.ts";
import { TOKEN_REQUEST_DENIED } from "./status.ts";

/**
 * Proves the federation instead of assuming it: a short-lived token for the ServiceAccount (TokenRequest,
 * audience api://AzureADTokenExchange) is the blueprint's client assertion in leg 1 against Entra, with
 * fmi_path = the identity's agent. The token and any secret live only in this function's frame: they are
 * never logged, stored, returned or put in an error. A token is minted only for a ServiceAccount that is
 * labelled for this identity (created by the operator, or opted in by its owners), and sent only to the
 * blueprint's authority, which the caller has checked against --allowed-authority-hosts.
 */

export type VerificationResult =
  | { state: "verified" }
  | { state: "failed"; failure: VerificationFailure }
  /** No answer, or a 5xx/429; `retryAfterMs` when Entra's answer carried a Retry-After. */
  | { state: "unreachable"; message: string; retryAfterMs?: number }
  /**
   * The API server refused the TokenRequest (403): the namespace has not bound agentid-token-requester to
   * the manager. Nothing was sent to Entra; retried after the verification policy's retryMs or a spec change.
   */
  | {
      state: "tokenForbidden";
      message: string;
      /**
       * TokenRequestDenied when an admission webhook refused it (not RBAC: binding the role changes
       * nothing); absent for the RBAC refusal (TokenRequestForbidden).
       */
      reason?: typeof TOKEN_REQUEST_DENIED;
    };

/** The role a namespace binds to the manager to let it verify (charts/agentid/templates/rbac.yaml). */
export const TOKEN_REQUESTER_ROLE = "agentid-token-requester";

/**
 * The message for a refused TokenRequest, with the RoleBinding to create. The manager's own ServiceAccount
 * is read from the API server's refusal ('User "system:serviceaccount:<ns>:<name>" cannot create ...');
 * when it is not there (the manager runs as a user), the command names a placeholder.
 */
export function tokenForbiddenMessage(namespace: string, serviceAccount: string, refusal: string): string {
  const user = /User "system:serviceaccount:([^:"\s]+):([^:"\s]+)"/.exec(refusal);
  const subject = user ? `${user[1]}:${user[2]}` : "<manager-namespace>:agentid-manager";
  return (
    `The API server refused the manager a TokenRequest for ServiceAccount ${serviceAccount} (403), so the ` +
    `federated credential cannot be verified. A namespace that verifies a workload-identity blueprint binds ` +
    `the ClusterRole ${TOKEN_REQUESTER_ROLE} to the manager: kubectl create rolebinding ${TOKEN_REQUESTER_ROLE} ` +
    `--clusterrole ${TOKEN_REQUESTER_ROLE} --serviceaccount ${subject} -n ${namespace}. ` +
    `Retried after the manager's --verify-retry or when the AgentIdentity changes.`
  );
}

/**
 * The API server's words for a refusal by an admission webhook (`admission webhook "<name>" denied the
 * request: <its message>`), also a 403: the webhook's name and message, or undefined for an RBAC refusal.
 */
export function admissionDenial(refusal: string): { webhook: string; message: string } | undefined {
  const match = /admission webhook "([^"]+)" denied the request:?\s*([\s\S]*)$/.exec(refusal);
  return match ? { webhook: match[1] ?? "", message: (match[2] ?? "").trim() } : undefined;
}

export function tokenDeniedMessage(
  serviceAccount: string,
  denial: { webhook: string; message: string },
): string {
  return (
    `The admission webhook ${denial.webhook} refused the manager a TokenRequest for ServiceAccount ` +
    `${serviceAccount} (not RBAC: no RoleBinding helps), so the federated credential cannot be verified. ` +
    `It said: ${denial.message || "(nothing)"}. If it is agentid's guard, the manager's own user was not ` +
    `recognised (see the manager's "webhook settings" log line, and the chart's matchCondition that exempts ` +
    `the agentid-manager ServiceAccount); otherwise exempt the manager from that webhook. ` +
    `Retried after the manager's --verify-retry or when the AgentIdentity changes.`
  );
}

export type BlueprintCredentialInput =
  | { kind: "serviceAccountToken"; serviceAccount: { name: string; labels?: Record<string, string> } }
  | { kind: "clientSecret"; secret: string };

export interface VerificationTarget {
  identity: AgentIdentity;
  blueprint: AgentIdentityBlueprint;
  agentClientId: string;
}

export interface Verifier {
  verify(
    target: VerificationTarget,
    credential: BlueprintCredentialInput,
    hint: HintContext,
  ): Promise<VerificationResult>;
}

/** Whether the operator may mint a token for this ServiceAccount on behalf of this identity. */
export function mayMintToken(
  identity: AgentIdentity,
  serviceAccount: { name: string; labels?: Record<string, string> },
): boolean {
  return (
    serviceAccount.name === identity.spec.serviceAccountName &&
    serviceAccount.labels?.[LABEL_SERVICE_ACCOUNT_BINDING] === identity.metadata.name
  );
}

export interface VerifierOptions {
  kube: KubeClient;
  dispatcher: Dispatcher;
  /** Lifetime of the TokenRequest token; the API server's minimum is 600 s. */
  tokenLifetimeSeconds?: number;
}

export async function requestServiceAccountToken(
  kube: KubeClient,
  namespace: string,
  serviceAccount: string,
  lifetimeSeconds: number,
): Promise<string> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(serviceAccount)}/token`;
  const answer = await kube.create<{ status?: { token?: unknown } }>(path, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { audiences: [TOKEN_AUDIENCE], expirationSeconds: lifetimeSeconds },
  });
  const token = answer?.status?.token;
  if (typeof token !== "string" || token === "")
    throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
  return token;
}

export function tokenEndpoint(blueprint: AgentIdentityBlueprint): string {
  return `${authorityHostOf(blueprint)}${encodeURIComponent(blueprint.spec.tenantId)}/oauth2/v2.0/token`;
}

/** Removes every occurrence of the given sensitive values from a text (Entra may echo what it was sent). */
export function redactValues(text: string, values: readonly string[]): string {
  let out = scrubTokens(text);
  for (const value of values) if (value.length >= 4) out = out.replaceAll(value, "[redacted]");
  return out;
}

function redactResult(result: VerificationResult, values: readonly string[]): VerificationResult {
  if (result.state === "failed")
    return {
      ...result,
      failure: { ...result.failure, message: redactValues(result.failure.message, values) },
    };
  if (result.state === "unreachable" || result.state === "tokenForbidden")
    return { ...result, message: redactValues(result.message, values) };
  return result;
}

export function createVerifier(options: VerifierOptions): Verifier {
  const lifetime = options.tokenLifetimeSeconds ?? 600;
  return {
    async verify(target, credential, hint) {
      const sensitive: string[] = [];
      const result = await attempt(target, credential, hint, sensitive);
      return redactResult(result, sensitive);
    },
  };

  async function attempt(
    { identity, blueprint, agentClientId }: VerificationTarget,
    credential: BlueprintCredentialInput,
    hint: HintContext,
    sensitive: string[],
  ): Promise<VerificationResult> {
    const form = new URLSearchParams({
      client_id: blueprint.spec.clientId,
      scope: EXCHANGE_SCOPE,
      grant_type: "client_credentials",
      fmi_path: agentClientId,
    });
    if (credential.kind === "clientSecret") {
      sensitive.push(credential.secret);
      form.set("client_secret", credential.secret);
    } else {
      if (!mayMintToken(identity, credential.serviceAccount))
        throw new Error(
          `ServiceAccount ${credential.serviceAccount.name} is not labelled for AgentIdentity ${identity.metadata.name}; no token is minted for it`,
        );
      let token: string;
      try {
        token = await requestServiceAccountToken(
          options.kube,
          identity.metadata.namespace,
          identity.spec.serviceAccountName,
          lifetime,
        );
      } catch (error) {
        // Not bound in this namespace: a condition that says what to bind, not a retry storm.
        if (!isApiError(error, 403)) throw error;
        // Or refused by an admission webhook (a 403 too): say that, not "bind the role".
        const denial = admissionDenial(error.message);
        if (denial)
          return {
            state: "tokenForbidden",
            reason: TOKEN_REQUEST_DENIED,
            message: tokenDeniedMessage(identity.spec.serviceAccountName, denial),
          };
        return {
          state: "tokenForbidden",
          message: tokenForbiddenMessage(
            identity.metadata.namespace,
            identity.spec.serviceAccountName,
            error.message,
          ),
        };
      }
      sensitive.push(token);
      form.set("client_assertion_type", CLIENT_ASSERTION_TYPE);
      form.set("client_assertion", token);
    }
    let status: number;
    let text: string;
    let retryAfter: string | undefined;
    try {
      const response = await request(tokenEndpoint(blueprint), {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: form.toString(),
        dispatcher: options.dispatcher,
      });
      status = response.statusCode;
      const header = response.headers["retry-after"];
      retryAfter = Array.isArray(header) ? header[0] : header;
      text = await response.body.text();
    } catch (error) {
      return {
        state: "unreachable",
        message: `Cannot reach Entra at ${tokenEndpoint(blueprint)}: ${scrubTokens((error as Error).message)}`,
      };
    }
    if (status === 200) return { state: "verified" };
    let body: EntraError = {};
    try {
      body = JSON.parse(text) as EntraError;
    } catch {
      // Not Entra's JSON: a proxy or an outage page.
    }
    if (status >= 500 || status === 429 || (!body.error && !body.error_codes)) {
      const retryAfterMs = parseRetryAfter(retryAfter, Date.now());
      return {
        state: "unreachable",
        message: `Entra answered HTTP ${status} at ${tokenEndpoint(blueprint)}; will retry later.`,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      };
    }
    return { state: "failed", failure: classifyEntraError(status, body, hint) };
  }
}
