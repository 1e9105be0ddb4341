import Fastify, { type FastifyInstance } from "fastify";
import type { Registry } from "prom-client";

export interface HealthSources {
  /** Caches synced and every component ready. */
  ready(): { ok: boolean; reason?: string };
  registry: Registry;
}

/** `/healthz` (alive), `/readyz` (caches synced, components ready) and `/metrics` (Prometheus). */
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
  app.get("/metrics", { schema: { response: { 200: { type: "string" } } } }, async (_req, reply) => {
    reply.header("content-type", sources.registry.contentType);
    return sources.registry.metrics();
  });
  await app.listen({ host: listen.host, port: listen.port });
  return app;
}

export function serverUrl(server: FastifyInstance): string {
  const address = server.server.address();
  if (!address || typeof address === "string") return String(address);
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}
