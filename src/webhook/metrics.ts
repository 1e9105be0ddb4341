import { Counter, Histogram, type Registry } from "prom-client";

/** The webhook's metrics, registered on the manager's registry (or a test's). */
export interface WebhookMetrics {
  /** Reviews by outcome (injected, allowed, refused, invalid, error) and reason (a RefusalReason or ""). */
  reviews: Counter<"outcome" | "reason">;
  duration: Histogram<"outcome">;
  /** The guard's reviews (guard.ts) by request kind (token, pod, pod-update, ephemeral, exec, attach), outcome and reason. */
  guardReviews: Counter<"kind" | "outcome" | "reason">;
  /** Serving-certificate loads by result (loaded, invalid) and renewals by kind (leaf, ca). */
  certificateLoads: Counter<"result">;
  certificateRenewals: Counter<"kind">;
}

export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  const existing = registry.getSingleMetric("agentid_webhook_reviews_total");
  if (existing) throw new Error("webhook metrics are registered on this registry already");
  return {
    reviews: new Counter({
      name: "agentid_webhook_reviews_total",
      help: "AdmissionReviews answered, by outcome (injected, allowed, refused, invalid, error) and refusal reason.",
      labelNames: ["outcome", "reason"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "agentid_webhook_review_duration_seconds",
      help: "Time from a parsed AdmissionReview to its answer, by outcome.",
      labelNames: ["outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    guardReviews: new Counter({
      name: "agentid_webhook_guard_reviews_total",
      help: "Guard reviews (the ValidatingWebhookConfiguration) answered, by request kind, outcome (allowed, skipped, refused, invalid, error) and refusal reason.",
      labelNames: ["kind", "outcome", "reason"],
      registers: [registry],
    }),
    certificateLoads: new Counter({
      name: "agentid_webhook_certificate_loads_total",
      help: "Serving certificates loaded into the HTTPS server (loaded) or rejected (invalid).",
      labelNames: ["result"],
      registers: [registry],
    }),
    certificateRenewals: new Counter({
      name: "agentid_webhook_certificate_renewals_total",
      help: "Serving certificates issued by the leader, by kind (leaf, ca).",
      labelNames: ["kind"],
      registers: [registry],
    }),
  };
}

/**
 * `make(a, b)` once per pair of label values, then the same object: prom-client's children
 * (`counter.labels(...)`) bound once per label set instead of a labels object per observation. The
 * values are few (an outcome and a refusal reason), so nothing is ever dropped.
 */
export function perLabels<T>(make: (a: string, b: string) => T): (a: string, b?: string) => T {
  const byA = new Map<string, Map<string, T>>();
  return (a, b = "") => {
    let byB = byA.get(a);
    if (!byB) {
      byB = new Map();
      byA.set(a, byB);
    }
    let child = byB.get(b);
    if (child === undefined) {
      child = make(a, b);
      byB.set(b, child);
    }
    return child;
  };
}
