import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { CONDITION_TYPES } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";

/** The operator's Prometheus metrics, registered on the manager's registry. */
export interface OperatorMetrics {
  reconciles: Counter<"result">;
  reconcileDuration: Histogram<"result">;
}

export interface MetricSources {
  queueDepth(): number;
  identities(): AgentIdentity[];
}

export function createOperatorMetrics(registry: Registry, sources: MetricSources): OperatorMetrics {
  const reconciles = new Counter({
    name: "agentid_reconciles_total",
    help: "AgentIdentity reconciles by result (success, requeue, error).",
    labelNames: ["result"],
    registers: [registry],
  });
  const reconcileDuration = new Histogram({
    name: "agentid_reconcile_duration_seconds",
    help: "Duration of AgentIdentity reconciles by result.",
    labelNames: ["result"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "agentid_workqueue_depth",
    help: "AgentIdentity keys waiting in the work queue.",
    registers: [registry],
    collect() {
      this.set(sources.queueDepth());
    },
  });
  new Gauge({
    name: "agentid_identities",
    help: "AgentIdentities in the cache by condition type and status.",
    labelNames: ["condition", "status"],
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      for (const type of CONDITION_TYPES)
        for (const s of ["True", "False", "Unknown"]) counts.set(`${type}\u0000${s}`, 0);
      for (const identity of sources.identities()) {
        for (const type of CONDITION_TYPES) {
          const status = identity.status?.conditions?.find((c) => c.type === type)?.status ?? "Unknown";
          const key = `${type}\u0000${status}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
      for (const [key, n] of counts) {
        const [condition, status] = key.split("\u0000");
        this.set({ condition: condition ?? "", status: status ?? "" }, n);
      }
    },
  });
  return { reconciles, reconcileDuration };
}
