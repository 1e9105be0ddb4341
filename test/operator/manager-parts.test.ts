import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/lib/command.ts";
import { parseDuration } from "../../src/manager/command.ts";
import { resourceOf } from "../../src/manager/metrics.ts";
import { parseIssuer } from "../../src/operator/issuer.ts";
import { createOperatorMetrics } from "../../src/operator/metrics.ts";

describe("resourceOf (bounded metric labels)", () => {
  it.each([
    ["/api/v1/namespaces/ns/serviceaccounts/sa/token", "serviceaccounts/token"],
    ["/api/v1/namespaces/ns/serviceaccounts", "serviceaccounts"],
    ["/api/v1/serviceaccounts?watch=1", "serviceaccounts"],
    ["/apis/agentid.io/v1alpha1/namespaces/ns/agentidentities/a/status", "agentidentities/status"],
    ["/apis/agentid.io/v1alpha1/agentidentities", "agentidentities"],
    ["/apis/coordination.k8s.io/v1/namespaces/ns/leases/agentid-manager", "leases"],
    ["/api/v1/namespaces/ns", "namespaces"],
    ["/.well-known/openid-configuration", "nonresource"],
  ])("%s → %s", (path, resource) => {
    expect(resourceOf(path)).toBe(resource);
  });
});

describe("parseDuration", () => {
  it.each([
    ["90s", 90_000],
    ["30m", 1_800_000],
    ["6h", 21_600_000],
    ["250", 250],
    ["250ms", 250],
  ])("%s", (text, ms) => {
    expect(parseDuration(text, "x")).toBe(ms);
  });
  it("refuses other text with a usage error naming the flag", () => {
    expect(() => parseDuration("6 hours", "verify-interval")).toThrow(UsageError);
    expect(() => parseDuration("-1s", "verify-interval")).toThrow(/--verify-interval/);
  });
});

describe("parseIssuer", () => {
  it("takes the https issuer of the discovery document", () => {
    expect(parseIssuer({ issuer: "https://127.0.0.1:6443" })).toBe("https://127.0.0.1:6443");
  });
  it.each([
    [{}, "has no issuer"],
    [{ issuer: "not a url" }, "is not a URL"],
    [{ issuer: "http://kubernetes.default.svc" }, "Entra only trusts https issuers"],
  ])("refuses %j", (doc, message) => {
    expect(() => parseIssuer(doc)).toThrow(message);
  });
});

describe("operator metrics", () => {
  it("counts identities by condition at scrape time and reports the queue depth", async () => {
    const identities = [
      {
        metadata: { name: "a", namespace: "n" },
        spec: { blueprintRef: { name: "bp" }, agent: { clientId: "c" }, serviceAccountName: "a" },
        status: {
          conditions: [
            { type: "Ready", status: "True" as const, reason: "Ready", message: "", lastTransitionTime: "" },
          ],
        },
      },
      {
        metadata: { name: "b", namespace: "n" },
        spec: { blueprintRef: { name: "bp" }, agent: { clientId: "c" }, serviceAccountName: "b" },
      },
    ];
    const registry = new Registry();
    createOperatorMetrics(registry, { queueDepth: () => 7, identities: () => identities });
    const text = await registry.metrics();
    expect(text).toContain('agentid_identities{condition="Ready",status="True"} 1');
    expect(text).toContain('agentid_identities{condition="Ready",status="Unknown"} 1');
    expect(text).toContain('agentid_identities{condition="Verified",status="Unknown"} 2');
    expect(text).toContain("agentid_workqueue_depth 7");
  });
});
