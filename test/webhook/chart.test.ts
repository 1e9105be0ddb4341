import { describe, expect, it } from "vitest";
import { selectorMatches } from "../../src/api/admit.ts";
import type { LabelSelector } from "../../src/api/types.ts";
import { renderChart } from "../support/chart.ts";

/**
 * The flags of the chart's webhook configurations (charts/agentid/templates/webhook.yaml, rendered as the
 * integration tests render it), read the way the API server reads them: what docs/webhook.md and the
 * design promise ("fail closed, narrowly") is what a release installs. The integration tests check the
 * selection with a real API server; this checks every entry, including flags a test cluster would not
 * notice (a timeout, a reinvocation policy).
 */

const RELEASE_NAMESPACE = "agentid-ops";

interface WebhookEntry {
  name: string;
  failurePolicy?: string;
  sideEffects?: string;
  reinvocationPolicy?: string;
  timeoutSeconds?: number;
  admissionReviewVersions?: string[];
  namespaceSelector?: LabelSelector;
  objectSelector?: LabelSelector;
  matchConditions?: Array<{ name: string; expression: string }>;
  rules?: Array<{ operations: string[]; resources: string[] }>;
}

function entriesOf(kind: "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"): WebhookEntry[] {
  const objects = renderChart({ name: "agentid", namespace: RELEASE_NAMESPACE });
  const configs = objects.filter((o) => o.kind === kind) as unknown as Array<{ webhooks: WebhookEntry[] }>;
  expect(configs).toHaveLength(1);
  return (configs[0] as { webhooks: WebhookEntry[] }).webhooks;
}

/** A namespace's labels as the API server sets them (kubernetes.io/metadata.name), plus opt-ins. */
function namespaceLabels(name: string): Record<string, string> {
  return { "kubernetes.io/metadata.name": name, "agentid.io/injection": "enabled" };
}

describe("the chart's MutatingWebhookConfiguration", () => {
  const entries = entriesOf("MutatingWebhookConfiguration");

  it("has the three entries docs/webhook.md lists", () => {
    expect(entries.map((e) => e.name)).toEqual([
      "inject.pods.agentid.io",
      "namespace.pods.agentid.io",
      "ephemeral.pods.agentid.io",
    ]);
  });

  it.each(entries.map((e) => [e.name, e] as const))(
    "%s fails closed, has no side effects, is reinvoked, answers quickly and speaks v1",
    (_, entry) => {
      expect(entry.failurePolicy).toBe("Fail");
      expect(entry.sideEffects).toBe("None");
      expect(entry.reinvocationPolicy).toBe("IfNeeded");
      expect(entry.timeoutSeconds).toBeGreaterThan(0);
      expect(entry.timeoutSeconds).toBeLessThanOrEqual(10);
      expect(entry.admissionReviewVersions).toEqual(["v1"]);
    },
  );

  it.each(entries.map((e) => [e.name, e] as const))(
    "%s never selects kube-system or the manager's namespace, and does select an application namespace",
    (_, entry) => {
      const selector = entry.namespaceSelector;
      expect(selector).toBeDefined();
      if (!selector) return;
      expect(selectorMatches(selector, namespaceLabels("kube-system"))).toBe(false);
      expect(selectorMatches(selector, namespaceLabels(RELEASE_NAMESPACE))).toBe(false);
      // The same selector takes an ordinary namespace: the two above are excluded by name, not by accident.
      expect(selectorMatches(selector, namespaceLabels("research"))).toBe(true);
    },
  );

  it("sends pod CREATEs only for opted-in pods, and kubectl debug only of pods that carry the sidecar or its token", () => {
    const [inject, namespaced, ephemeral] = entries as [WebhookEntry, WebhookEntry, WebhookEntry];
    expect(inject.rules).toEqual([expect.objectContaining({ operations: ["CREATE"], resources: ["pods"] })]);
    expect(inject.objectSelector).toEqual({ matchLabels: { "agentid.io/inject": "true" } });
    expect(namespaced.rules).toEqual([
      expect.objectContaining({ operations: ["CREATE"], resources: ["pods"] }),
    ]);
    expect(
      selectorMatches(namespaced.namespaceSelector as LabelSelector, {
        "kubernetes.io/metadata.name": "research",
      }),
    ).toBe(false);
    expect(ephemeral.rules).toEqual([
      expect.objectContaining({ operations: ["UPDATE"], resources: ["pods/ephemeralcontainers"] }),
    ]);
    // No objectSelector (labels are the pod author's to change); the API server evaluates the condition
    // (test/integration/webhook-ephemeral.test.ts runs it): the immutable container and volume names.
    expect(ephemeral.objectSelector).toBeUndefined();
    const expression = ephemeral.matchConditions?.map((c) => c.expression).join(" ") ?? "";
    expect(expression).toContain("object.spec.containers.exists(c, c.name == 'agentid-sidecar')");
    expect(expression).toContain("object.spec.initContainers.exists(c, c.name == 'agentid-sidecar')");
    expect(expression).toContain("object.spec.volumes.exists(v, v.name == 'agentid-token')");
    expect(expression).not.toContain("annotations");
    expect(expression).not.toContain("labels");
  });
});

describe("the chart's ValidatingWebhookConfiguration (the guard)", () => {
  const entries = entriesOf("ValidatingWebhookConfiguration");

  it.each(entries.map((e) => [e.name, e] as const))(
    "%s fails closed, has no side effects, answers quickly, speaks v1 and is sent only what its conditions select",
    (_, entry) => {
      expect(entry.failurePolicy).toBe("Fail");
      expect(entry.sideEffects).toBe("None");
      expect(entry.timeoutSeconds).toBeGreaterThan(0);
      expect(entry.timeoutSeconds).toBeLessThanOrEqual(10);
      expect(entry.admissionReviewVersions).toEqual(["v1"]);
      expect(entry.matchConditions?.length ?? 0).toBeGreaterThan(0);
      const selector = entry.namespaceSelector as LabelSelector;
      expect(selectorMatches(selector, namespaceLabels("kube-system"))).toBe(false);
      expect(selectorMatches(selector, namespaceLabels(RELEASE_NAMESPACE))).toBe(false);
      expect(selectorMatches(selector, namespaceLabels("research"))).toBe(true);
    },
  );
});
