import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";

/**
 * The manager's own Prometheus metrics, on a registry of its own (no global state between managers in one
 * process). Components (the operator, the webhook) register theirs on the same registry.
 */
export interface ManagerMetrics {
  registry: Registry;
  watchRestarts: Counter<"resource" | "reason">;
  kubeRequests: Counter<"verb" | "resource" | "code">;
  leader: Gauge;
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

export function createManagerMetrics(): ManagerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "agentid_manager_" });
  const watchRestarts = new Counter({
    name: "agentid_watch_restarts_total",
    help: "Watch restarts by resource and reason (closed, gone, error, stall).",
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
  return { registry, watchRestarts, kubeRequests, leader };
}
