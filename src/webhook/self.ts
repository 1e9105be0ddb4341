import { readFile } from "node:fs/promises";
import type { KubeClient } from "../kube/client.ts";
import type { Logger } from "../lib/log.ts";

/**
 * The manager's own user as the API server names it: the guard lets that user mint the exchange token
 * (the verification TokenRequest). A SelfSubjectReview answers it (authentication.k8s.io/v1, GA in
 * Kubernetes 1.28; v1beta1 in 1.27); on an API server that serves neither, the `sub` of the mounted
 * ServiceAccount token is the same name (`system:serviceaccount:<namespace>:<name>`, the user the API
 * server authenticates that token as). The token is decoded, not verified: it is the manager's own file
 * and says only who the manager is; it never reaches a log.
 */

export const IN_CLUSTER_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token";

const SA_USER = /^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;

/** One way of learning the user: its answer, or why it gave none (for the log). */
export type SelfAnswer = { user: string } | { error: string };

export interface SelfUser {
  user: string | undefined;
  source: "SelfSubjectReview v1" | "SelfSubjectReview v1beta1" | "ServiceAccount token" | "none";
}

/** The ServiceAccount user a (projected or legacy) ServiceAccount token names in `sub`, if it is one. */
export function serviceAccountUserOfToken(token: string): string | undefined {
  const payload = token.trim().split(".")[1];
  if (!payload) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { sub?: unknown }).sub;
    return typeof sub === "string" && SA_USER.test(sub) ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** The first answer that names a user, in order of trust: v1, v1beta1, the mounted token's subject. */
export function chooseSelfUser(answers: {
  v1: SelfAnswer;
  v1beta1?: SelfAnswer;
  token?: string | undefined;
}): SelfUser {
  const named = (a: SelfAnswer | undefined) => (a && "user" in a && a.user ? a.user : undefined);
  const v1 = named(answers.v1);
  if (v1) return { user: v1, source: "SelfSubjectReview v1" };
  const beta = named(answers.v1beta1);
  if (beta) return { user: beta, source: "SelfSubjectReview v1beta1" };
  const fromToken = answers.token === undefined ? undefined : serviceAccountUserOfToken(answers.token);
  if (fromToken) return { user: fromToken, source: "ServiceAccount token" };
  return { user: undefined, source: "none" };
}

async function review(kube: KubeClient, version: "v1" | "v1beta1"): Promise<SelfAnswer> {
  try {
    const answer = await kube.create<{ status?: { userInfo?: { username?: string } } }>(
      `/apis/authentication.k8s.io/${version}/selfsubjectreviews`,
      { apiVersion: `authentication.k8s.io/${version}`, kind: "SelfSubjectReview" },
    );
    const user = answer.status?.userInfo?.username;
    return user ? { user } : { error: "the review named no user" };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** Asks the API server (v1, then v1beta1), then reads the mounted token; never throws. */
export async function whoAmI(
  kube: KubeClient,
  logger: Logger,
  tokenFile: string = IN_CLUSTER_TOKEN_FILE,
): Promise<string[]> {
  const v1 = await review(kube, "v1");
  const v1beta1 = "user" in v1 ? undefined : await review(kube, "v1beta1");
  let token: string | undefined;
  if (v1beta1 && !("user" in v1beta1)) token = await readFile(tokenFile, "utf8").catch(() => undefined);
  const self = chooseSelfUser({ v1, v1beta1, token });
  if (self.source !== "SelfSubjectReview v1") {
    const errors = [v1, v1beta1].flatMap((a) => (a && "error" in a ? [a.error] : []));
    // Without it the manager's verification TokenRequest is refused by its own guard unless the chart's
    // matchCondition exempts the manager's ServiceAccount (it does); a warning, not a failure.
    logger.warn(
      { source: self.source, errors },
      "learnt the manager's own user without a v1 SelfSubjectReview",
    );
  }
  return self.user ? [self.user] : [];
}
