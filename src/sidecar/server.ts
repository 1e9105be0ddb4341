import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import { isLoopback } from "./loopback.ts";
import type { MetricsSink } from "./metrics.ts";
import { registerAuthorizationHeaderRoutes } from "./routes/authorization-header.ts";
import type { RouteContext } from "./routes/context.ts";
import { registerDownstreamApiRoutes } from "./routes/downstream-api.ts";
import { PROBE_PATHS, registerHealthRoutes } from "./routes/health.ts";
import { sendProblem } from "./routes/problem.ts";
import { registerValidateRoute } from "./routes/validate.ts";

export interface ServerOptions {
  logger: Logger;
  metrics?: MetricsSink;
  bodyLimitBytes?: number;
}

function isProbe(url: string): boolean {
  const q = url.indexOf("?");
  return PROBE_PATHS.has(q < 0 ? url : url.slice(0, q));
}

export function buildServer(ctx: RouteContext, options: ServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Per-request access logs would cost more than the hot path itself; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: building one costs more than answering from the cache.
    childLoggerFactory: (logger) => logger,
    bodyLimit: options.bodyLimitBytes ?? 4 * 1024 * 1024,
    return503OnClosing: true,
    // Idle keep-alive connections are closed on shutdown; in-flight requests are let finish.
    forceCloseConnections: "idle",
    // The route schemas are constants of this code (and Ajv's strict mode still rejects unknown keywords
    // when compiling them): checking them against Ajv's meta-schema first would compile that meta-schema
    // at every start, about half of the time from process start to ready.
    ajv: { customOptions: { validateSchema: false } },
  });

  app.addHook("onRequest", (request, reply, done) => {
    if (!isLoopback(request.socket.remoteAddress) && !isProbe(request.url)) {
      // 403 with an empty body, before anything else runs (Microsoft's LocalCallerRestriction).
      reply.code(403).send();
      return;
    }
    done();
  });
  const metrics = options.metrics;
  if (metrics) {
    app.addHook("onResponse", (request, reply, done) => {
      metrics.httpRequest(request.routeOptions.url ?? "unmatched", reply.statusCode);
      done();
    });
  }

  // Bodies for /DownstreamApi are forwarded untouched, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => done(null, body));

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, 404, `No route for ${request.method} ${request.url.split("?", 1)[0]}`),
  );
  app.setErrorHandler((error: { statusCode?: number; message: string }, request, reply) => {
    const status =
      error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error.message }, "unexpected error");
    return sendProblem(reply, status, status === 500 ? "An unexpected error occurred." : error.message);
  });

  registerHealthRoutes(app, ctx);
  registerAuthorizationHeaderRoutes(app, ctx);
  registerDownstreamApiRoutes(app, ctx);
  registerValidateRoute(app, ctx);
  return app;
}
