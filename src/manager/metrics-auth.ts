import { createHash } from "node:crypto";
import type { KubeClient } from "../kube/client.ts";

/**
 * Who may read /metrics when it is exposed beyond loopback, decided by the API server as
 * controller-runtime's `filters.WithAuthenticationAndAuthorization` does: the caller's bearer token goes
 * to a TokenReview, the user it names to a SubjectAccessReview for `get` on the non-resource URL
 * `/metrics`. Grant it with a ClusterRole such as the chart's `agentid-metrics-reader`.
 */

export type MetricsDecision = { allowed: true } | { allowed: false; status: 401 | 403; message: string };

interface TokenReview {
  status?: {
    authenticated?: boolean;
    user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  };
}
interface SubjectAccessReview {
  status?: { allowed?: boolean };
}

export interface MetricsAuthOptions {
  kube: KubeClient;
  /** Decisions are cached by a hash of the token: allowed for this long (default 60 s)… */
  allowTtlMs?: number;
  /** …denied for this long (default 10 s), so a new RoleBinding takes effect soon. */
  denyTtlMs?: number;
  now?: () => number;
}

/** At most this many cached decisions; the oldest goes first. */
const MAX_CACHED = 256;

export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

export function createMetricsAuthorizer(
  options: MetricsAuthOptions,
): (authorization?: string) => Promise<MetricsDecision> {
  const now = options.now ?? Date.now;
  const allowTtl = options.allowTtlMs ?? 60_000;
  const denyTtl = options.denyTtlMs ?? 10_000;
  const cache = new Map<string, { decision: MetricsDecision; until: number }>();

  async function decide(token: string): Promise<MetricsDecision> {
    const review = await options.kube.create<TokenReview>("/apis/authentication.k8s.io/v1/tokenreviews", {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenReview",
      spec: { token },
    });
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username)
      return { allowed: false, status: 401, message: "the bearer token was not accepted by the API server" };
    const access = await options.kube.create<SubjectAccessReview>(
      "/apis/authorization.k8s.io/v1/subjectaccessreviews",
      {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: user.username,
          ...(user.uid ? { uid: user.uid } : {}),
          ...(user.groups ? { groups: user.groups } : {}),
          ...(user.extra ? { extra: user.extra } : {}),
          nonResourceAttributes: { path: "/metrics", verb: "get" },
        },
      },
    );
    return access.status?.allowed
      ? { allowed: true }
      : { allowed: false, status: 403, message: `${user.username} may not get /metrics` };
  }

  return async (authorization) => {
    const token = bearerToken(authorization);
    if (!token) return { allowed: false, status: 401, message: "a bearer token is required" };
    const key = createHash("sha256").update(token).digest("base64url");
    const hit = cache.get(key);
    if (hit && hit.until > now()) return hit.decision;
    const decision = await decide(token);
    cache.delete(key);
    cache.set(key, { decision, until: now() + (decision.allowed ? allowTtl : denyTtl) });
    if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value as string);
    return decision;
  };
}
