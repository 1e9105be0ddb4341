import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { CONDITION_TYPES } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";

/** The manager's Prometheus metrics, on a registry of its own (no global state between managers in one process). */
export interface ManagerMetrics {
  registry: Registry;
  reconciles: Counter<"result">;
  reconcileDuration: Histogram<"result">;
  watchRestarts: Counter<"resource" | "reason">;
  kubeRequests: Counter<"verb" | "resource" | "code">;
  leader: Gauge;
}

export interface MetricSources {
  queueDepth(): number;
  identities(): AgentIdentity[];
}

/** The resource a request path addresses, e.g. "agentidentities/status" or "serviceaccounts/token" (bounded cardinality). */
export function resourceOf(path: string): string {
  const parts = path.split("?")[0]?.split("/").filter(Boolean) ?? [];
  if (parts[0] !== "api" && parts[0] !== "apis") return "nonresource";
  let i = parts[0] === "api" ? 2 : 3;
  if (parts[i] === "namespaces" && parts.length > i + 2) i += 2;
  const resource = parts[i] ?? "unknown";
  const sub = parts[i + 2];
  return sub ? `${resource}/${sub}` : resource;
}

export function createManagerMetrics(sources: MetricSources): ManagerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "agentid_manager_" });
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
  const watchRestarts = new Counter({
    name: "agentid_watch_restarts_total",
    help: "Watch restarts by resource and reason (closed, gone, error, stall, resync).",
    labelNames: ["resource", "reason"],
    registers: [registry],
  });
  const kubeRequests = new Counter({
    name: "agentid_kube_requests_total",
    help: "Requests the manager sent to the Kubernetes API, by verb, resource and status code.",
    labelNames: ["verb", "resource", "code"],
    registers: [registry],
  });
  const leader = new Gauge({
    name: "agentid_leader",
    help: "1 while this replica holds the leader lease.",
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
  return { registry, reconciles, reconcileDuration, watchRestarts, kubeRequests, leader };
}
