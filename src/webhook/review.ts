import { ANNOTATION_INJECTED, TOKEN_VOLUME } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import type { Logger } from "../lib/log.ts";
import { type AdmissionRequest, type AdmissionResponse, allow, deny } from "./admission.ts";
import { findSidecar, listenPortOf, mutatePod } from "./mutate.ts";
import {
  annotationsOf,
  arrayAt,
  displayName,
  type JsonObject,
  objectAt,
  stringAt,
  volumesOf,
} from "./raw.ts";
import { isApiReadTimeout, ReadBudget } from "./reads.ts";
import { recheckRefusal } from "./recheck.ts";
import { ephemeralRefusals, limitRefusals, type Refusal } from "./refusals.ts";
import { type IdentitySource, type Selected, selectCached, selectFromApi, wantsInjection } from "./select.ts";
import type { InjectionTarget, SidecarSettings } from "./types.ts";

/**
 * One admission review, end to end: which pod, which identity, what target, what patch. The decisions
 * are the pure functions of this directory; this function only sequences them and reports.
 */

/**
 * `recheck` on a refusal: the input a cache a moment behind could have got wrong (`identity`: not Ready;
 * `namespace`: its labels do not admit it), which the review reads from the API server once before refusing.
 */
export type Resolved =
  | { ok: true; target: InjectionTarget }
  | { ok: false; refusal: Refusal; recheck?: "identity" | "namespace" };

/**
 * `freshNamespace`: read the namespace from the API server, not the cache (the one re-check, recheck.ts).
 * `budget`: the review's reads (reads.ts); without one, resolve answers from the caches only.
 */
export interface ResolveOptions {
  freshNamespace?: boolean;
  budget?: ReadBudget;
}

/**
 * The identity's blueprint and namespace checks, then the rendering: an InjectionTarget or a refusal.
 * A promise only when something must be read from the API server; `undefined` when that is so and no
 * `budget` was given (the review then asks again with one).
 */
export type ResolveTarget = (
  identity: AgentIdentity,
  namespace: string,
  options?: ResolveOptions,
) => Resolved | Promise<Resolved> | undefined;

export interface ReviewDeps {
  identities: IdentitySource;
  resolve: ResolveTarget;
  settings: () => SidecarSettings;
  logger: Logger;
  /** An Event on the AgentIdentity a refusal concerns (best effort, never awaited). */
  recordRefusal?(identity: AgentIdentity, refusals: readonly Refusal[]): void;
}

export interface ReviewResult {
  response: AdmissionResponse;
  outcome: "injected" | "allowed" | "skipped" | "refused";
  reason: string;
}

export function createReviewer(deps: ReviewDeps) {
  const { logger } = deps;

  function refuse(
    request: AdmissionRequest,
    all: readonly Refusal[],
    identity?: AgentIdentity,
  ): ReviewResult {
    // Bounded here, where the answer, the log line and the Event are made: one place for every path.
    const refusals = limitRefusals(all);
    const reason = refusals[0]?.reason ?? "Refused";
    // The log line a platform team greps for; messages never carry a secret (they name objects only).
    logger.warn(
      {
        uid: request.uid,
        namespace: request.namespace,
        pod: displayName(request.object),
        identity: identity?.metadata.name,
        user: request.user,
        reasons: refusals.map((r) => r.reason),
        message: refusals.map((r) => r.message).join("; "),
      },
      "pod refused",
    );
    if (identity && !request.dryRun) deps.recordRefusal?.(identity, refusals);
    return { response: deny(request.uid, refusals), outcome: "refused", reason };
  }

  async function ephemeral(request: AdmissionRequest): Promise<ReviewResult> {
    const pod = request.object;
    const injected = annotationsOf(pod)[ANNOTATION_INJECTED];
    // The chart's matchConditions send only pods with our sidecar or token volume (no opt-in selector:
    // labels and annotations are the pod author's to change); checked again here in case a configuration
    // sends more. A pod without our sidecar, token volume or mark is none of ours.
    const sidecar = findSidecar(pod);
    const ours =
      sidecar !== undefined ||
      injected !== undefined ||
      volumesOf(pod).some((v) => stringAt(v, "name") === TOKEN_VOLUME);
    if (!ours) return { response: allow(request.uid, []), outcome: "skipped", reason: "" };
    // What the sidecar itself was given counts even when its identity cannot be resolved any more (the
    // mark removed, the identity deleted or not Ready): its port and the Secrets it reads.
    let port = sidecar ? (listenPortOf(sidecar.raw) ?? 0) : 0;
    let secretNames: string[] = sidecar ? secretsReadBy(sidecar.raw) : [];
    let identity: AgentIdentity | undefined;
    if (injected) {
      const name = injected.slice(0, injected.lastIndexOf("@") > 0 ? injected.lastIndexOf("@") : undefined);
      const budget = new ReadBudget();
      identity =
        deps.identities.cached(request.namespace, name) ??
        (await deps.identities.read(request.namespace, name, budget));
      if (identity) {
        const resolved = await deps.resolve(identity, request.namespace, { budget });
        if (resolved?.ok) {
          port ||= resolved.target.port;
          secretNames = [...new Set([...secretNames, ...resolved.target.secretNames])];
        }
      }
    }
    const refusals = ephemeralRefusals(pod, request.oldObject, port, secretNames);
    if (refusals.length > 0) return refuse(request, refusals, identity);
    return { response: allow(request.uid, []), outcome: "allowed", reason: "" };
  }

  /** The rest of a review the caches did not answer, under one budget (reads.ts): the misses, the re-check. */
  async function withReads(
    pod: unknown,
    namespace: string,
    selectedNow: Selected | undefined,
    resolvedNow: Resolved | Promise<Resolved> | undefined,
  ) {
    const budget = new ReadBudget();
    const selected = selectedNow ?? (await selectFromApi(pod, namespace, deps.identities, budget));
    let resolved: Resolved | undefined;
    if (selected.ok) {
      const resolving =
        (selected === selectedNow ? resolvedNow : undefined) ??
        deps.resolve(selected.identity, namespace, { budget });
      resolved = isThenable(resolving) ? await resolving : resolving;
      if (resolved?.ok) return { ok: true as const, identity: selected.identity, target: resolved.target };
    }
    return recheckRefusal(pod, namespace, deps, selected, resolved, budget);
  }

  return async function review(request: AdmissionRequest): Promise<ReviewResult> {
    // A try block costs nothing until something throws; only a timed-out API read is answered here (fail
    // closed with what could not be read), anything else is the server's internal error.
    try {
      if (request.operation === "UPDATE" && request.subResource === "ephemeralcontainers")
        return await ephemeral(request);
      if (request.operation !== "CREATE" || request.subResource !== "") {
        return { response: allow(request.uid, []), outcome: "skipped", reason: "" };
      }
      const pod = request.object;
      if (!wantsInjection(pod)) return { response: allow(request.uid, []), outcome: "skipped", reason: "" };
      // The caches answer nearly every review, at once: no promise, no budget, no timer. Anything else
      // (a cache miss, a refusal to re-check) goes on under one read budget for the whole review.
      const selectedNow = selectCached(pod, request.namespace, deps.identities);
      const resolvedNow = selectedNow?.ok ? deps.resolve(selectedNow.identity, request.namespace) : undefined;
      let identity: AgentIdentity;
      let target: InjectionTarget;
      if (selectedNow?.ok && resolvedNow !== undefined && !isThenable(resolvedNow) && resolvedNow.ok) {
        identity = selectedNow.identity;
        target = resolvedNow.target;
      } else {
        const checked = await withReads(pod, request.namespace, selectedNow, resolvedNow);
        if (!checked.ok) return refuse(request, [checked.refusal], checked.identity);
        ({ identity, target } = checked);
      }
      const mutation = mutatePod({ pod, target, settings: deps.settings() });
      if (!mutation.allowed) return refuse(request, mutation.refusals, identity);
      if (mutation.injectedNow) {
        logger.info(
          {
            uid: request.uid,
            namespace: request.namespace,
            pod: displayName(pod),
            identity: mutation.injected,
          },
          "sidecar injected",
        );
      }
      return {
        response: allow(request.uid, mutation.patch, { injected: mutation.injected }),
        outcome: mutation.injectedNow ? "injected" : "allowed",
        reason: "",
      };
    } catch (error) {
      if (!isApiReadTimeout(error)) throw error;
      // No Event: the API server is slow, not the identity wrong, and an Event would be one more write to it.
      return refuse(request, [{ reason: "ApiServerTimeout", message: error.message }]);
    }
  };
}

/**
 * Whether an answer is still to come. Any thenable, not only this realm's Promise: an IdentitySource or
 * resolve from elsewhere (another library's promise) must be awaited too, never taken for the answer.
 * Allocates nothing.
 */
function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === "function";
}

/** The Secrets a container reads through its environment (secretKeyRef): the sidecar's client secret. */
function secretsReadBy(container: JsonObject): string[] {
  const names = (arrayAt(container, "env") ?? []).flatMap((e) => {
    const name = stringAt(objectAt(objectAt(e, "valueFrom"), "secretKeyRef"), "name");
    return name ? [name] : [];
  });
  return [...new Set(names)];
}
