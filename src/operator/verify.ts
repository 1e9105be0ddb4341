import { type Dispatcher, request } from "undici";
import { authorityHostOf } from "../api/cloud.ts";
import {
  CLIENT_ASSERTION_TYPE,
  EXCHANGE_SCOPE,
  LABEL_SERVICE_ACCOUNT_BINDING,
  TOKEN_AUDIENCE,
} from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import { scrubTokens } from "../lib/log.ts";
import {
  classifyEntraError,
  type EntraError,
  type HintContext,
  type VerificationFailure,
} from "./entra-errors.ts";

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
  | { state: "unreachable"; message: string };

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
  if (result.state === "unreachable") return { ...result, message: redactValues(result.message, values) };
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
      const token = await requestServiceAccountToken(
        options.kube,
        identity.metadata.namespace,
        identity.spec.serviceAccountName,
        lifetime,
      );
      sensitive.push(token);
      form.set("client_assertion_type", CLIENT_ASSERTION_TYPE);
      form.set("client_assertion", token);
    }
    let status: number;
    let text: string;
    try {
      const response = await request(tokenEndpoint(blueprint), {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: form.toString(),
        dispatcher: options.dispatcher,
      });
      status = response.statusCode;
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
      return {
        state: "unreachable",
        message: `Entra answered HTTP ${status} at ${tokenEndpoint(blueprint)}; will retry later.`,
      };
    }
    return { state: "failed", failure: classifyEntraError(status, body, hint) };
  }
}
