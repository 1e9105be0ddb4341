import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The sidecar's Prometheus metrics, on their own registry (no hidden global). */
export interface SidecarMetrics {
  registry: Registry;
  tokenRequests: Counter<"flow" | "outcome">;
  cacheEvents: Counter<"event">;
  cacheSize: Gauge;
  entraRequests: Histogram<"status">;
  httpRequests: Counter<"route" | "status">;
}

export function createMetrics(cacheSize: () => number): SidecarMetrics {
  const registry = new Registry();
  return {
    registry,
    tokenRequests: new Counter({
      name: "agentid_sidecar_token_requests_total",
      help: "Token requests by flow and outcome (hit: answered from the cache; acquired; error)",
      labelNames: ["flow", "outcome"],
      registers: [registry],
    }),
    cacheEvents: new Counter({
      name: "agentid_sidecar_token_cache_events_total",
      help: "Token cache events: hit, miss, refresh_ok, refresh_error, evict",
      labelNames: ["event"],
      registers: [registry],
    }),
    cacheSize: new Gauge({
      name: "agentid_sidecar_token_cache_entries",
      help: "Tokens held in the cache",
      registers: [registry],
      collect() {
        this.set(cacheSize());
      },
    }),
    entraRequests: new Histogram({
      name: "agentid_sidecar_entra_request_duration_seconds",
      help: "Duration of HTTP requests to Entra, by status (0: no answer)",
      labelNames: ["status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: "agentid_sidecar_http_requests_total",
      help: "Requests served, by route and status",
      labelNames: ["route", "status"],
      registers: [registry],
    }),
  };
}
