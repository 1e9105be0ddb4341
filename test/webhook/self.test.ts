import { describe, expect, it } from "vitest";
import { chooseSelfUser, serviceAccountUserOfToken } from "../../src/webhook/self.ts";

/**
 * How the manager learns its own user (the one the guard lets mint a verification token) on API servers
 * of every supported version: SelfSubjectReview v1 (1.28+), v1beta1 (1.27), else its mounted token.
 */

const MANAGER = "system:serviceaccount:agentid-system:agentid-manager";
const jwt = (payload: unknown) =>
  [{ alg: "RS256" }, payload]
    .map((p) => Buffer.from(JSON.stringify(p)).toString("base64url"))
    .concat("c2lnbmF0dXJl")
    .join(".");
const notServed = { error: "the server could not find the requested resource" };

describe("chooseSelfUser", () => {
  it.each([
    {
      case: "1.28+: the v1 review",
      answers: { v1: { user: "kubernetes-admin" } },
      want: { user: "kubernetes-admin", source: "SelfSubjectReview v1" },
    },
    {
      case: "1.27: v1 not served, the v1beta1 review",
      answers: {
        v1: notServed,
        v1beta1: { user: MANAGER },
        token: jwt({ sub: "system:serviceaccount:x:y" }),
      },
      want: { user: MANAGER, source: "SelfSubjectReview v1beta1" },
    },
    {
      case: "neither served: the mounted token's subject",
      answers: { v1: notServed, v1beta1: notServed, token: `${jwt({ sub: MANAGER, aud: ["k8s"] })}\n` },
      want: { user: MANAGER, source: "ServiceAccount token" },
    },
    {
      case: "neither served and no token (a kubeconfig user outside a pod)",
      answers: { v1: notServed, v1beta1: notServed },
      want: { user: undefined, source: "none" },
    },
    {
      case: "neither served and a token that names no ServiceAccount",
      answers: { v1: notServed, v1beta1: notServed, token: jwt({ sub: "alice" }) },
      want: { user: undefined, source: "none" },
    },
    {
      case: "a review that names nobody falls through",
      answers: { v1: { user: "" }, v1beta1: { error: "forbidden" }, token: jwt({ sub: MANAGER }) },
      want: { user: MANAGER, source: "ServiceAccount token" },
    },
  ])("$case", ({ answers, want }) => {
    expect(chooseSelfUser(answers)).toEqual(want);
  });
});

describe("serviceAccountUserOfToken", () => {
  it.each([
    { token: "not a jwt", want: undefined },
    { token: "a.!!!.c", want: undefined },
    { token: jwt("just a string"), want: undefined },
    { token: jwt({ sub: 7 }), want: undefined },
    { token: jwt({ sub: "system:serviceaccount:ns:sa:extra" }), want: undefined },
    { token: jwt({ sub: "system:serviceaccount:ns:sa" }), want: "system:serviceaccount:ns:sa" },
  ])("$token → $want", ({ token, want }) => {
    expect(serviceAccountUserOfToken(token)).toBe(want);
  });
});
