import type { AgentIdentity } from "../api/types.ts";
import type { Logger } from "../lib/log.ts";
import { ADMISSION_API_VERSION, type AdmissionResponse, allow, deny, type Operation } from "./admission.ts";
import {
  bindsServiceAccount,
  connectRefusal,
  connectTarget,
  type Expected,
  ephemeralGuardRefusals,
  markedInjected,
  podCreateRefusals,
  podUpdateRefusals,
  projectsExchangeToken,
  type TokenRequestInput,
  tokenRequestNeedsBinding,
  tokenRequestRefusal,
} from "./guard.ts";
import {
  arrayAt,
  displayName,
  isObject,
  type JsonObject,
  objectAt,
  serviceAccountOf,
  stringAt,
} from "./raw.ts";
import { isApiReadTimeout, ReadBudget } from "./reads.ts";
import { recheckRefusal } from "./recheck.ts";
import { limitRefusals, type Refusal } from "./refusals.ts";
import type { ResolveTarget } from "./review.ts";
import { type IdentitySource, selectIdentity } from "./select.ts";
import type { SidecarSettings } from "./types.ts";

/**
 * One guard review, end to end: parse what the API server sent, look up whether an AgentIdentity binds
 * the ServiceAccount concerned (cache first, the API server on a miss), apply the pure decisions of
 * guard.ts, and report a refusal the way the mutating webhook does (log line, Event, audit annotation).
 */

export type GuardKind = "token" | "pod" | "pod-update" | "ephemeral" | "exec" | "attach";

export interface GuardRequest {
  uid: string;
  kind: GuardKind;
  operation: Operation;
  namespace: string;
  /** The object's name (the ServiceAccount for a TokenRequest, the pod otherwise); "" for generateName. */
  name: string;
  object: JsonObject;
  oldObject: JsonObject | undefined;
  user: string;
  groups: string[];
  dryRun: boolean;
}

export type GuardParsed =
  | { ok: true; request: GuardRequest }
  | { ok: false; httpStatus: number; message: string }
  | { ok: false; httpStatus: 200; uid: string; message: string };

function kindOf(resource: string, subResource: string, operation: string): GuardKind | undefined {
  if (resource === "serviceaccounts" && subResource === "token" && operation === "CREATE") return "token";
  if (resource !== "pods") return undefined;
  if (subResource === "" && operation === "CREATE") return "pod";
  if (subResource === "" && operation === "UPDATE") return "pod-update";
  if (subResource === "ephemeralcontainers" && operation === "UPDATE") return "ephemeral";
  if ((subResource === "exec" || subResource === "attach") && operation === "CONNECT") return subResource;
  return undefined;
}

export function parseGuardReview(body: unknown): GuardParsed {
  if (!isObject(body)) return { ok: false, httpStatus: 400, message: "the body is not a JSON object" };
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== "AdmissionReview") {
    return {
      ok: false,
      httpStatus: 400,
      message: `expected apiVersion ${ADMISSION_API_VERSION} and kind AdmissionReview`,
    };
  }
  const request = body.request;
  const uid = stringAt(request, "uid");
  if (!isObject(request) || !uid)
    return { ok: false, httpStatus: 400, message: "the AdmissionReview has no request with a uid" };
  const refuse = (message: string): GuardParsed => ({ ok: false, httpStatus: 200, uid, message });
  const resource = objectAt(request, "resource");
  const operation = stringAt(request, "operation") ?? "";
  const subResource = stringAt(request, "subResource") ?? "";
  const kind =
    resource && (resource.group ?? "") === "" && resource.version === "v1"
      ? kindOf(stringAt(resource, "resource") ?? "", subResource, operation)
      : undefined;
  if (!kind) {
    return refuse(
      "the guard judges token requests, pods and exec/attach only; check the rules of the ValidatingWebhookConfiguration",
    );
  }
  const object = request.object;
  if (!isObject(object)) return refuse("the request carries no object");
  const namespace = stringAt(request, "namespace") ?? "";
  if (!namespace) return refuse("the request names no namespace");
  const userInfo = objectAt(request, "userInfo");
  return {
    ok: true,
    request: {
      uid,
      kind,
      operation: operation as Operation,
      namespace,
      name: stringAt(request, "name") ?? "",
      object,
      oldObject: isObject(request.oldObject) ? request.oldObject : undefined,
      user: stringAt(userInfo, "username") ?? "",
      groups: (arrayAt(userInfo, "groups") ?? []).filter((g): g is string => typeof g === "string"),
      dryRun: request.dryRun === true,
    },
  };
}

export interface GuardDeps {
  identities: IdentitySource;
  resolve: ResolveTarget;
  settings: () => SidecarSettings;
  /** Who may mint the exchange token anyway: the manager's own user (its verification TokenRequest). */
  trustedUsers: () => readonly string[];
  /**
   * The pod an exec or attach without a container name goes to, from the API server (not a cache: the
   * pod may be a second old); undefined when it does not exist.
   */
  readPod(namespace: string, name: string, budget: ReadBudget): Promise<JsonObject | undefined>;
  logger: Logger;
  /** The clock of the unbound-account memory (tests); Date.now by default. */
  now?: () => number;
  /** How long an account found unbound stays so without another LIST (UNBOUND_TTL_MS by default). */
  unboundTtlMs?: number;
  /** An Event on the AgentIdentity a refusal concerns (best effort, never awaited). */
  recordRefusal?(identity: AgentIdentity, refusals: readonly Refusal[], eventReason: string): void;
}

export interface GuardResult {
  response: AdmissionResponse;
  outcome: "allowed" | "skipped" | "refused";
  reason: string;
}

const EVENT_REASONS: Record<GuardKind, string> = {
  token: "TokenRequestRefused",
  pod: "PodRefused",
  "pod-update": "PodRefused",
  ephemeral: "PodRefused",
  exec: "ExecRefused",
  attach: "ExecRefused",
};

/**
 * How long a ServiceAccount the API server's LIST found unbound is taken as unbound without asking again.
 * Every TokenRequest and pod of another product using the exchange audience (azure-workload-identity)
 * misses the cache; without this each cost one LIST of the namespace's AgentIdentities. Binding an account
 * is not instant protection anyway (a token minted a moment before stays valid, docs/webhook.md "What
 * remains"), and the shared cache, asked first, sees a new identity within a watch event.
 */
export const UNBOUND_TTL_MS = 2000;
const UNBOUND_MAX_ENTRIES = 10_000;

/**
 * The AgentIdentity that binds a ServiceAccount: names it in its spec, or records it in its status (the
 * account it held before a rename, its federated credential's subject); a deleting one too, since its
 * credential may still stand (bindsServiceAccount). The shared cache first; a miss reads the API server
 * (an identity created a moment ago must not leave its account open), one LIST per namespace at a time
 * (concurrent LISTs of a namespace are one request, reads.ts, each review waiting within its own budget),
 * and remembers an unbound account for UNBOUND_TTL_MS.
 */
function bindingLookup(source: IdentitySource, now: () => number, ttlMs: number) {
  const unboundUntil = new Map<string, number>();
  return async (
    namespace: string,
    serviceAccount: string,
    budget?: ReadBudget,
  ): Promise<AgentIdentity | undefined> => {
    const find = (list: AgentIdentity[]) =>
      list.find((i) => bindsServiceAccount(i, namespace, serviceAccount));
    const cached = find(source.cachedList(namespace));
    if (cached) return cached;
    const key = `${namespace}/${serviceAccount}`;
    if ((unboundUntil.get(key) ?? 0) > now()) return undefined;
    // A budget of its own when the lookup is the review's only read (made here: none when the cache answers).
    const found = find(await source.list(namespace, budget ?? new ReadBudget()));
    if (found) unboundUntil.delete(key);
    else {
      if (unboundUntil.size >= UNBOUND_MAX_ENTRIES) unboundUntil.clear();
      unboundUntil.set(key, now() + ttlMs);
    }
    return found;
  };
}

export function createGuard(deps: GuardDeps) {
  const { logger } = deps;
  const lookup = bindingLookup(deps.identities, deps.now ?? Date.now, deps.unboundTtlMs ?? UNBOUND_TTL_MS);
  const pass = (request: GuardRequest, outcome: "allowed" | "skipped" = "allowed"): GuardResult => ({
    response: allow(request.uid, []),
    outcome,
    reason: "",
  });

  function refuse(request: GuardRequest, all: readonly Refusal[], identity?: AgentIdentity): GuardResult {
    // Bounded here, where the answer, the log line and the Event are made: one place for every path.
    const refusals = limitRefusals(all);
    const reason = refusals[0]?.reason ?? "Refused";
    logger.warn(
      {
        uid: request.uid,
        kind: request.kind,
        namespace: request.namespace,
        name: request.kind === "pod" ? displayName(request.object) : request.name,
        identity: identity?.metadata.name,
        user: request.user,
        reasons: refusals.map((r) => r.reason),
        message: refusals.map((r) => r.message).join("; "),
      },
      "request refused by the guard",
    );
    if (identity && !request.dryRun) deps.recordRefusal?.(identity, refusals, EVENT_REASONS[request.kind]);
    return { response: deny(request.uid, refusals), outcome: "refused", reason };
  }

  async function token(request: GuardRequest): Promise<GuardResult> {
    const input: TokenRequestInput = {
      namespace: request.namespace,
      serviceAccount: request.name,
      audiences: (arrayAt(objectAt(request.object, "spec"), "audiences") ?? []).filter(
        (a): a is string => typeof a === "string",
      ),
      user: request.user,
      groups: request.groups,
      trustedUsers: deps.trustedUsers(),
    };
    if (!tokenRequestNeedsBinding(input)) return pass(request, "skipped");
    const identity = await lookup(request.namespace, request.name);
    if (!identity) return pass(request);
    return refuse(request, [tokenRequestRefusal(input, identity.metadata.name)], identity);
  }

  async function expectedFor(pod: JsonObject, namespace: string, budget: ReadBudget): Promise<Expected> {
    const selected = await selectIdentity(pod, namespace, deps.identities, budget);
    const resolved = selected.ok ? await deps.resolve(selected.identity, namespace, { budget }) : undefined;
    if (selected.ok && resolved?.ok) return { ok: true, target: resolved.target, settings: deps.settings() };
    // The same one re-check as the mutating webhook's, so that a cache a moment behind does not make the
    // guard refuse a pod the webhook just injected.
    const checked = await recheckRefusal(pod, namespace, deps, selected, resolved, budget);
    if (!checked.ok) return { ok: false, refusal: checked.refusal };
    return { ok: true, target: checked.target, settings: deps.settings() };
  }

  async function pod(request: GuardRequest): Promise<GuardResult> {
    const object = request.object;
    if (!projectsExchangeToken(object)) return pass(request, "skipped");
    // One budget for every read of this review (reads.ts): the lookup, the selection, the re-check.
    const budget = new ReadBudget();
    const identity = await lookup(request.namespace, serviceAccountOf(object), budget);
    if (!identity) return pass(request);
    const expected = await expectedFor(object, request.namespace, budget);
    const refusals = podCreateRefusals(object, identity.metadata.name, expected);
    return refusals.length > 0 ? refuse(request, refusals, identity) : pass(request);
  }

  async function update(request: GuardRequest): Promise<GuardResult> {
    const old = request.oldObject;
    if (!old) return pass(request, "skipped");
    const refusals =
      request.kind === "ephemeral"
        ? ephemeralGuardRefusals(request.object, old)
        : podUpdateRefusals(request.object, old);
    if (refusals.length === 0) return pass(request);
    const identity = await lookup(request.namespace, serviceAccountOf(old));
    // An injected pod's sidecar is ours whoever binds the account now; a pod of another product
    // (azure-workload-identity) with the same audience is none of ours.
    if (!identity && !(request.kind === "pod-update" && markedInjected(old))) return pass(request);
    return refuse(request, refusals, identity);
  }

  async function review(request: GuardRequest): Promise<GuardResult> {
    try {
      return await judge(request);
    } catch (error) {
      // An API read past its deadline (reads.ts): fail closed saying what could not be read; no Event.
      if (!isApiReadTimeout(error)) throw error;
      return refuse(request, [{ reason: "ApiServerTimeout", message: error.message }]);
    }
  }

  async function judge(request: GuardRequest): Promise<GuardResult> {
    switch (request.kind) {
      case "token":
        return token(request);
      case "pod":
        return pod(request);
      case "pod-update":
      case "ephemeral":
        return update(request);
      case "exec":
      case "attach": {
        const requested = stringAt(request.object, "container") ?? "";
        // No container named: the API server picks the pod's only regular container; read the pod to
        // know which that is.
        const pod =
          requested === ""
            ? await deps.readPod(request.namespace, request.name, new ReadBudget())
            : undefined;
        const container = connectTarget(requested, pod);
        const refusal =
          container === undefined ? undefined : connectRefusal(request.kind, container, requested !== "");
        return refusal ? refuse(request, [refusal]) : pass(request, "skipped");
      }
    }
  }

  return review;
}
