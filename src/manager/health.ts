import Fastify, { type FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import { createCertificateAuthority, issueCertificate } from "../lib/pki.ts";
import { isLoopback } from "./bind-address.ts";
import type { MetricsDecision } from "./metrics-auth.ts";

export interface HealthSources {
  /** Caches synced and every component ready. */
  ready(): { ok: boolean; reason?: string };
}

/** `/healthz` (alive) and `/readyz` (caches synced, components ready), for the kubelet's probes. */
export async function startHealthServer(
  listen: { host: string; port: number },
  sources: HealthSources,
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  const text = { 200: { type: "string" }, 503: { type: "string" } };
  app.get("/healthz", { schema: { response: text } }, async () => "ok");
  app.get("/readyz", { schema: { response: text } }, async (_req, reply) => {
    const state = sources.ready();
    return state.ok ? "ok" : reply.code(503).send(state.reason ?? "not ready");
  });
  await app.listen({ host: listen.host, port: listen.port });
  return app;
}

export interface MetricsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  /**
   * Absent: plain HTTP without authentication (loopback only). Present: HTTPS, and every request needs a
   * bearer token that this authorizer accepts (TokenReview + SubjectAccessReview).
   */
  secure?: {
    authorize(authorization?: string): Promise<MetricsDecision>;
    /** PEM certificate and key; a self-signed pair is made when absent. */
    certPem?: string;
    keyPem?: string;
  };
}

/**
 * `/metrics`. On loopback (the default) only processes of the pod's network namespace can reach it. Any
 * other address needs `secure`: the command refuses to expose it otherwise.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<FastifyInstance> {
  if (!options.secure && !isLoopback(options.host))
    throw new Error(`/metrics on ${options.host} needs authentication; only loopback serves it openly`);
  let https: { cert: string; key: string } | undefined;
  if (options.secure) {
    if (options.secure.certPem && options.secure.keyPem)
      https = { cert: options.secure.certPem, key: options.secure.keyPem };
    else {
      // Like controller-runtime's secure metrics: a self-signed certificate when none is given.
      const ca = await createCertificateAuthority("agentid-manager metrics", 365);
      const leaf = await issueCertificate(ca, {
        commonName: "agentid-manager-metrics",
        dnsNames: ["localhost"],
        ipAddresses: ["127.0.0.1"],
        usage: "server",
      });
      https = { cert: `${leaf.certPem.trim()}\n${ca.certPem.trim()}\n`, key: leaf.keyPem };
    }
  }
  const app = (https ? Fastify({ logger: false, https }) : Fastify({ logger: false })) as FastifyInstance;
  const secure = options.secure;
  app.get("/metrics", async (req, reply) => {
    if (secure) {
      let decision: MetricsDecision;
      try {
        decision = await secure.authorize(req.headers.authorization);
      } catch {
        // The API server could not be asked: refuse rather than serve unauthenticated.
        return reply.code(503).type("text/plain").send("cannot check the caller's access right now");
      }
      if (!decision.allowed) {
        if (decision.status === 401) reply.header("www-authenticate", "Bearer");
        return reply.code(decision.status).type("text/plain").send(decision.message);
      }
    }
    reply.header("content-type", options.registry.contentType);
    return options.registry.metrics();
  });
  await app.listen({ host: options.host, port: options.port });
  return app;
}

export function serverUrl(server: FastifyInstance, scheme = "http"): string {
  const address = server.server.address();
  if (!address || typeof address === "string") return String(address);
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}
