import type { FastifyInstance } from "fastify";
import type { RouteContext } from "./context.ts";
import { sendText } from "./ok.ts";

/** Paths answered to any caller: the kubelet probes them from the node, not from loopback. */
export const PROBE_PATHS = new Set(["/healthz", "/readyz"]);

export function registerHealthRoutes(app: FastifyInstance, ctx: RouteContext): void {
  // ASP.NET maps health checks for every method; so does this.
  app.all("/healthz", async (_request, reply) => sendText(reply, "Healthy"));
  app.get("/readyz", async (_request, reply) => {
    const ready = ctx.state.ready && !ctx.state.shuttingDown;
    if (ready) {
      if (ctx.warmUp) setImmediate(ctx.warmUp);
      return sendText(reply, "Ready");
    }
    return reply.code(503).type("text/plain").send("NotReady");
  });
}
