import { API_VERSION, BLUEPRINT_PLURAL, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import { requestDeadline } from "../kube/deadline.ts";
import { isNotFound } from "../kube/errors.ts";
import type { JsonObject } from "./raw.ts";

/**
 * The webhook's own reads from the API server (a cache miss, the one re-check before a refusal), each with
 * a deadline shorter than the webhook's `timeoutSeconds`. Without it a slow API server would hold the
 * review for the kube client's 30 s, and the API server would give up first with its generic "context
 * deadline exceeded"; with it the review fails closed with a message that says what could not be read.
 */

/**
 * 3 s: the webhook entries wait 5 s (`timeoutSeconds: 5`, charts/agentid/templates/webhook.yaml). A review
 * makes at most two rounds of reads one after the other (a cache miss, then the re-check), each bounded
 * here; what is left covers the rest of the review and the answer's trip back. A round that takes 3 s
 * means the API server is in trouble, and answering "try again" then is honest.
 */
export const API_READ_TIMEOUT_MS = 3000;

/** A read that did not finish within the deadline. Its message names the object only, never a value. */
export class ApiReadTimeoutError extends Error {
  constructor(what: string, timeoutMs: number) {
    super(`could not ${what} from the API server within ${timeoutMs / 1000} s; try again`);
    this.name = "ApiReadTimeoutError";
  }
}

export function isApiReadTimeout(error: unknown): error is ApiReadTimeoutError {
  return error instanceof ApiReadTimeoutError;
}

export interface NamespaceObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; labels?: Record<string, string> };
}

export function identityPathOf(namespace: string, name?: string): string {
  return `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}${name ? `/${encodeURIComponent(name)}` : ""}`;
}

export interface ApiReads {
  identity(namespace: string, name: string): Promise<AgentIdentity | undefined>;
  identities(namespace: string): Promise<AgentIdentity[]>;
  blueprint(name: string): Promise<AgentIdentityBlueprint | undefined>;
  namespace(name: string): Promise<NamespaceObject | undefined>;
  pod(namespace: string, name: string): Promise<JsonObject | undefined>;
}

export function createApiReads(kube: KubeClient, timeoutMs = API_READ_TIMEOUT_MS): ApiReads {
  /** One GET under the deadline; a 404 is `undefined` where the object may be missing. */
  async function get<T>(path: string, what: string): Promise<T | undefined> {
    const deadline = requestDeadline(undefined, timeoutMs);
    try {
      return await kube.request<T>("GET", path, { signal: deadline.signal });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (deadline.signal?.aborted) throw new ApiReadTimeoutError(what, timeoutMs);
      throw error;
    } finally {
      deadline.done();
    }
  }
  return {
    identity: (ns, name) =>
      get<AgentIdentity>(identityPathOf(ns, name), `read AgentIdentity ${name} in namespace ${ns}`),
    identities: async (ns) =>
      (
        await get<{ items?: AgentIdentity[] }>(
          identityPathOf(ns),
          `list the AgentIdentities of namespace ${ns}`,
        )
      )?.items ?? [],
    blueprint: (name) =>
      get<AgentIdentityBlueprint>(
        `/apis/${API_VERSION}/${BLUEPRINT_PLURAL}/${encodeURIComponent(name)}`,
        `read AgentIdentityBlueprint ${name}`,
      ),
    namespace: (name) =>
      get<NamespaceObject>(`/api/v1/namespaces/${encodeURIComponent(name)}`, `read Namespace ${name}`),
    pod: (ns, name) =>
      get<JsonObject>(
        `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`,
        `read Pod ${name} in namespace ${ns}`,
      ),
  };
}
