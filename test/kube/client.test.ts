import { KubeConfig } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  ApiError,
  apiErrorFrom,
  createKubeClient,
  isConflict,
  isGone,
  isNotFound,
  jsonPointerSegment,
} from "../../src/kube/client.ts";

describe("apiErrorFrom", () => {
  it("takes reason, message and details from a Status body", () => {
    const body = JSON.stringify({
      kind: "Status",
      status: "Failure",
      reason: "Invalid",
      message: 'AgentIdentity.agentid.io "x" is invalid: spec.tenantId: Invalid value',
      details: { causes: [{ field: "spec.tenantId" }] },
      code: 422,
    });
    const error = apiErrorFrom(422, body, "POST", "/apis/agentid.io/v1alpha1/namespaces/ns/agentidentities");
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(422);
    expect(error.reason).toBe("Invalid");
    expect(error.message).toContain("spec.tenantId");
    expect(error.details).toEqual({ causes: [{ field: "spec.tenantId" }] });
    expect(error.method).toBe("POST");
  });

  it("falls back to a reason from the status code and a short excerpt of a non-JSON body", () => {
    const error = apiErrorFrom(503, `<html>${"x".repeat(500)}</html>`, "GET", "/api/v1/pods", "3");
    expect(error.reason).toBe("ServiceUnavailable");
    expect(error.message.length).toBeLessThan(300);
    expect(error.retryAfterSeconds).toBe(3);
  });

  it("never carries a token in its message", () => {
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLXZhbHVl";
    const error = apiErrorFrom(400, JSON.stringify({ message: `bad token ${jwt}` }), "POST", "/x");
    expect(error.message).not.toContain(jwt);
  });

  it("classifies by status", () => {
    expect(isNotFound(apiErrorFrom(404, "", "GET", "/x"))).toBe(true);
    expect(isConflict(apiErrorFrom(409, "", "PUT", "/x"))).toBe(true);
    expect(isGone(apiErrorFrom(410, "", "GET", "/x"))).toBe(true);
    expect(isNotFound(new Error("404"))).toBe(false);
  });
});

describe("createKubeClient", () => {
  it("refuses a kubeconfig without a current cluster", () => {
    expect(() => createKubeClient(new KubeConfig())).toThrow(/no current cluster/);
  });

  it("keeps a path prefix of the server URL (API servers behind a proxy path)", () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: "https://127.0.0.1:6443/k8s/clusters/c-1/" }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    expect(createKubeClient(kc).server).toBe("https://127.0.0.1:6443/k8s/clusters/c-1");
  });
});

describe("jsonPointerSegment", () => {
  it("escapes ~ and / as RFC 6901 requires", () => {
    expect(jsonPointerSegment("agentid.io/identity")).toBe("agentid.io~1identity");
    expect(jsonPointerSegment("a~b")).toBe("a~0b");
  });
});
