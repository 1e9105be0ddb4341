import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * The sidecar's Prometheus metrics, on their own registry (no hidden global). This module is only
 * imported when a metrics port is configured: prom-client costs start-up time and memory that a
 * sidecar without metrics should not pay.
 */
export interface PromMetrics {
  registry: Registry;
  sink: MetricsSink;
}

/** What the rest of the sidecar reports; a no-op unless metrics are on. */
export interface MetricsSink {
  tokenRequest(flow: string, outcome: "acquired" | "error"): void;
  cacheEvent(event: "hit" | "miss" | "refresh_ok" | "refresh_error" | "evict"): void;
  entraRequest(status: number, seconds: number): void;
  httpRequest(route: string, status: number): void;
}

export function createPromMetrics(cacheSize: () => number): PromMetrics {
  const registry = new Registry();
  const tokenRequests = new Counter({
    name: "agentid_sidecar_token_requests_total",
    help: "Token requests that went past the hot path, by flow and outcome (acquired: from the cache or Entra; error)",
    labelNames: ["flow", "outcome"],
    registers: [registry],
  });
  const cacheEvents = new Counter({
    name: "agentid_sidecar_token_cache_events_total",
    help: "Token cache events: hit, miss, refresh_ok, refresh_error, evict",
    labelNames: ["event"],
    registers: [registry],
  });
  new Gauge({
    name: "agentid_sidecar_token_cache_entries",
    help: "Tokens held in the cache",
    registers: [registry],
    collect() {
      this.set(cacheSize());
    },
  });
  const entraRequests = new Histogram({
    name: "agentid_sidecar_entra_request_duration_seconds",
    help: "Duration of HTTP requests to Entra, by status (0: no answer)",
    labelNames: ["status"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const httpRequests = new Counter({
    name: "agentid_sidecar_http_requests_total",
    help: "Requests served, by route and status",
    labelNames: ["route", "status"],
    registers: [registry],
  });
  return {
    registry,
    sink: {
      tokenRequest: (flow, outcome) => tokenRequests.inc({ flow, outcome }),
      cacheEvent: (event) => cacheEvents.inc({ event }),
      entraRequest: (status, seconds) => entraRequests.observe({ status: String(status) }, seconds),
      httpRequest: (route, status) => httpRequests.inc({ route, status: String(status) }),
    },
  };
}
