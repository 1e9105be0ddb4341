import { API_VERSION, BLUEPRINT_PLURAL, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { KubeClient } from "../kube/client.ts";
import { requestDeadline } from "../kube/deadline.ts";
import { isNotFound } from "../kube/errors.ts";
import { MAX_OBJECT_NAME, printable } from "../lib/text.ts";
import type { JsonObject } from "./raw.ts";

/**
 * The webhook's own reads from the API server (a cache miss, the one re-check before a refusal, the guard's
 * lookups), under one deadline per review (`ReadBudget`) shorter than the webhook's `timeoutSeconds`.
 * Without it a slow API server would hold the review for the kube client's 30 s, and the API server would
 * give up first with its generic "context deadline exceeded"; with it the review fails closed with a
 * message that says what could not be read.
 */

/**
 * 4 s for all the reads of one review together: the webhook entries wait 5 s (`timeoutSeconds: 5`,
 * charts/agentid/templates/webhook.yaml), and that clock started before the review reached us (the API
 * server's connection, the body) and keeps running while we answer. A refused review can chain several
 * reads (the blueprint, the re-check's identity, the guard's LIST); a deadline per read would let them add
 * up past 5 s, so they share this one. The second left covers the rest of the review and the answer's trip.
 * Reads that take 4 s mean the API server is in trouble, and answering "try again" then is honest.
 */
export const REVIEW_READ_BUDGET_MS = 4000;

/** A read that did not finish within the review's budget. Its message names the object only, never a value. */
export class ApiReadTimeoutError extends Error {
  constructor(what: string, budgetMs: number) {
    super(`could not ${what} from the API server within ${budgetMs / 1000} s; try again`);
    this.name = "ApiReadTimeoutError";
  }
}

export function isApiReadTimeout(error: unknown): error is ApiReadTimeoutError {
  return error instanceof ApiReadTimeoutError;
}

/**
 * The reads of one review: their shared deadline, and what this review read already (by path), so that no
 * review reads the same object twice (the blueprint on a cache miss and again in the re-check). Made only
 * when a review must read at all: a review the caches answer has none, and no timer is ever set until a
 * read starts.
 */
export class ReadBudget {
  readonly totalMs: number;
  readonly deadline: number;
  /** Paths read in this review and their answers (made at the first read). */
  memo: Map<string, Promise<unknown>> | undefined;
  constructor(totalMs: number = REVIEW_READ_BUDGET_MS, now: number = Date.now()) {
    this.totalMs = totalMs;
    this.deadline = now + totalMs;
  }
  remainingMs(now: number = Date.now()): number {
    return this.deadline - now;
  }
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
  identity(namespace: string, name: string, budget: ReadBudget): Promise<AgentIdentity | undefined>;
  identities(namespace: string, budget: ReadBudget): Promise<AgentIdentity[]>;
  blueprint(name: string, budget: ReadBudget): Promise<AgentIdentityBlueprint | undefined>;
  namespace(name: string, budget: ReadBudget): Promise<NamespaceObject | undefined>;
  pod(namespace: string, name: string, budget: ReadBudget): Promise<JsonObject | undefined>;
}

/**
 * A name no object can have (a DNS subdomain: lowercase letters, digits, `-` and `.`, at most 253): the
 * answer is "not found" without asking. Through the API server every name is valid; a review posted to
 * the webhook's port directly can carry anything, and must not make us send it on.
 */
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export function isObjectName(name: string): boolean {
  return OBJECT_NAME.test(name);
}
const NO_SUCH_OBJECT = "";

/** A name in a message: bounded, control characters replaced (src/lib/text.ts). */
function show(name: string): string {
  return printable(name, MAX_OBJECT_NAME);
}

/** A read aborted at its deadline (the budget of the review that started it). */
const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * Every GET under the budget of the review that asks. Reads of the same path at the same time are one
 * request (a burst of pods of one namespace that all miss the cache, or all refused, costs one LIST, not
 * one each): it runs under the budget of the review that started it, and each other review waits for it at
 * most its own remaining budget. The answer is shared only while that request is in flight: it started
 * after any review now waiting on it had begun, at most a few milliseconds before, as the guard's LIST
 * did before this was shared by everything.
 */
export function createApiReads(kube: KubeClient): ApiReads {
  const inflight = new Map<string, Promise<unknown>>();

  /** The request itself: the value, `undefined` for a 404, TIMED_OUT past `timeoutMs`; other errors reject. */
  async function request(path: string, timeoutMs: number): Promise<unknown> {
    const deadline = requestDeadline(undefined, timeoutMs);
    try {
      return await kube.request("GET", path, { signal: deadline.signal });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (deadline.signal?.aborted) return TIMED_OUT;
      throw error;
    } finally {
      deadline.done();
    }
  }

  /** `shared`, but no longer than `ms`: TIMED_OUT then (the request goes on for whoever started it). */
  function within(shared: Promise<unknown>, ms: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(TIMED_OUT), ms);
      timer.unref();
      shared.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  function get<T>(path: string, what: string, budget: ReadBudget): Promise<T | undefined> {
    if (path === NO_SUCH_OBJECT) return Promise.resolve(undefined);
    const memo = budget.memo?.get(path);
    if (memo) return memo as Promise<T | undefined>;
    const remaining = budget.remainingMs();
    let answer: Promise<unknown>;
    if (remaining <= 0) answer = Promise.resolve(TIMED_OUT);
    else {
      const shared = inflight.get(path);
      if (shared) answer = within(shared, remaining);
      else {
        const started = request(path, remaining).finally(() => inflight.delete(path));
        inflight.set(path, started);
        answer = started;
      }
    }
    const read = answer.then((value) => {
      if (value === TIMED_OUT) throw new ApiReadTimeoutError(what, budget.totalMs);
      return value as T | undefined;
    });
    budget.memo ??= new Map();
    budget.memo.set(path, read);
    return read;
  }
  return {
    identity: (ns, name, budget) =>
      get<AgentIdentity>(
        isObjectName(ns) && isObjectName(name) ? identityPathOf(ns, name) : NO_SUCH_OBJECT,
        `read AgentIdentity ${show(name)} in namespace ${show(ns)}`,
        budget,
      ),
    identities: async (ns, budget) =>
      (
        await get<{ items?: AgentIdentity[] }>(
          isObjectName(ns) ? identityPathOf(ns) : NO_SUCH_OBJECT,
          `list the AgentIdentities of namespace ${show(ns)}`,
          budget,
        )
      )?.items ?? [],
    blueprint: (name, budget) =>
      get<AgentIdentityBlueprint>(
        isObjectName(name)
          ? `/apis/${API_VERSION}/${BLUEPRINT_PLURAL}/${encodeURIComponent(name)}`
          : NO_SUCH_OBJECT,
        `read AgentIdentityBlueprint ${show(name)}`,
        budget,
      ),
    namespace: (name, budget) =>
      get<NamespaceObject>(
        isObjectName(name) ? `/api/v1/namespaces/${encodeURIComponent(name)}` : NO_SUCH_OBJECT,
        `read Namespace ${show(name)}`,
        budget,
      ),
    pod: (ns, name, budget) =>
      get<JsonObject>(
        isObjectName(ns) && isObjectName(name)
          ? `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`
          : NO_SUCH_OBJECT,
        `read Pod ${show(name)} in namespace ${show(ns)}`,
        budget,
      ),
  };
}
