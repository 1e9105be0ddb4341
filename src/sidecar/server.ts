import type { Socket } from "node:net";
import Fastify, {
  type FastifyInstance,
  type FastifyServerFactoryHandler,
  type FastifyServerOptions,
} from "fastify";
import type { IncomingMessage, Server, ServerResponse } from "../lib/builtins.ts";
import { HostFilter } from "./hosts.ts";
import { isLoopback } from "./loopback.ts";
import type { MetricsSink } from "./metrics.ts";
import { registerAuthorizationHeaderRoutes } from "./routes/authorization-header.ts";
import type { RouteContext } from "./routes/context.ts";
import { registerDownstreamApiRoutes } from "./routes/downstream-api.ts";
import { PROBE_PATHS, registerHealthRoutes } from "./routes/health.ts";
import { answerFromCache, KnownUrls } from "./routes/known-urls.ts";
import { problem, sendProblem } from "./routes/problem.ts";
import { registerValidateRoute } from "./routes/validate.ts";

// The CommonJS view of node:http: an ESM import of it also loads Node's bundled undici (node:http's
// lazy WebSocket exports are read to build the ESM namespace), about 7 MB of the sidecar's memory.
const { createServer } = process.getBuiltinModule("node:http");

export interface ServerOptions {
  metrics?: MetricsSink;
  /** Default: loopback callers only, loopback and `localhost` Host names only. */
  callers?: CallerPolicy;
  bodyLimitBytes?: number;
}

/**
 * The sidecar's routes declare no JSON schemas: their few inputs are checked by hand (routes/overrides.ts,
 * config/values.ts) and their answers are built whole and serialised with JSON.stringify. So fastify
 * needs no schema compiler, and is given ones that refuse to compile through its documented
 * `schemaController.compilersFactory` option: fastify then never loads Ajv and fast-json-stringify
 * (about 3 MB of resident memory and a fifth of the start-up), and a route that gains a schema fails
 * loudly at start-up instead of loading them silently.
 */
export const NO_SCHEMA_COMPILERS: NonNullable<FastifyServerOptions["schemaController"]> = {
  compilersFactory: {
    buildValidator: () => () => {
      throw new Error("the sidecar's routes take no JSON schemas (see src/sidecar/server.ts)");
    },
    buildSerializer: () => () => {
      throw new Error("the sidecar's routes take no JSON schemas (see src/sidecar/server.ts)");
    },
  },
};

function isProbe(url: string): boolean {
  const q = url.indexOf("?");
  return PROBE_PATHS.has(q < 0 ? url : url.slice(0, q));
}

function numberOption(opts: Record<string, unknown>, name: string, fallback: number): number {
  const value = opts[name];
  return typeof value === "number" ? value : fallback;
}

/** Who may call: non-loopback callers at all, and the Host names accepted besides loopback ones. */
export interface CallerPolicy {
  allowNonLoopback: boolean;
  hosts: HostFilter;
}

/**
 * The HTTP server under fastify. Whether a peer is on this machine is decided once per connection,
 * when it is accepted; a request from elsewhere gets 403 with an empty body before fastify sees it
 * (Microsoft's LocalCallerRestriction), unless non-loopback callers were allowed explicitly. Every
 * request's Host must be loopback, `localhost` or a configured name (against DNS rebinding), else 400.
 * The probe paths answer anyone (the kubelet probes from the node, with the pod's IP as Host). A
 * loopback request pays a WeakSet and a Map lookup instead of fastify onRequest hooks.
 */
function callerCheckingServer(
  handler: FastifyServerFactoryHandler,
  opts: Record<string, unknown>,
  policy: CallerPolicy,
  onDenied: (status: number) => void,
  answered: (request: IncomingMessage, response: ServerResponse) => boolean,
): Server {
  const remote = new WeakSet<Socket>();
  const server = createServer((request, response) => {
    const fromElsewhere = remote.has(request.socket);
    if (fromElsewhere || !policy.hosts.allows(request.headers.host)) {
      if (!isProbe(request.url ?? "/")) {
        if (fromElsewhere && !policy.allowNonLoopback) {
          deny(response);
          onDenied(403);
          return;
        }
        if (!policy.hosts.allows(request.headers.host)) {
          badHost(response, request.headers.host ?? "");
          onDenied(400);
          return;
        }
      }
    }
    if (answered(request, response)) return;
    handler(request, response);
  });
  server.on("connection", (socket: Socket) => {
    if (!isLoopback(socket.remoteAddress)) remote.add(socket);
  });
  // What fastify sets on a server it creates itself.
  server.keepAliveTimeout = numberOption(opts, "keepAliveTimeout", 72_000);
  server.requestTimeout = numberOption(opts, "requestTimeout", 0);
  server.setTimeout(numberOption(opts, "connectionTimeout", 0));
  return server;
}

function deny(response: ServerResponse): void {
  response.writeHead(403, { "content-length": "0" });
  response.end();
}

function badHost(response: ServerResponse, host: string): void {
  const shown = host.length > 100 ? `${host.slice(0, 100)}…` : host;
  const body = JSON.stringify(
    problem(
      400,
      `The Host '${shown}' is not allowed: only localhost, loopback addresses and the names in AllowedHosts are (DNS rebinding protection).`,
    ),
  );
  response.writeHead(400, {
    "content-type": "application/problem+json",
    "content-length": Buffer.byteLength(body),
  });
  response.end(body);
}

export function buildServer(ctx: RouteContext, options: ServerOptions): FastifyInstance {
  const metrics = options.metrics;
  const known = new KnownUrls();
  const app = Fastify({
    // No logger for fastify itself: with one, fastify builds a child logger and listens for the end of
    // every response, which costs more than answering from the cache. Routes log through ctx.log where
    // something fails; per-request access logs are not written.
    logger: false,
    serverFactory: (handler, opts) =>
      callerCheckingServer(
        handler,
        opts,
        options.callers ?? { allowNonLoopback: false, hosts: new HostFilter([]) },
        (status) => metrics?.httpRequest(status === 403 ? "not_loopback" : "bad_host", status),
        (request, response) => answerFromCache(known, ctx.tokens, request, response, metrics),
      ),
    bodyLimit: options.bodyLimitBytes ?? 4 * 1024 * 1024,
    return503OnClosing: true,
    // Idle keep-alive connections are closed on shutdown; in-flight requests are let finish.
    forceCloseConnections: "idle",
    schemaController: NO_SCHEMA_COMPILERS,
  });

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
  app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
    const status =
      error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) ctx.log.error({ err: error.message }, "unexpected error");
    return sendProblem(reply, status, status === 500 ? "An unexpected error occurred." : error.message);
  });

  registerHealthRoutes(app, ctx);
  registerAuthorizationHeaderRoutes(app, ctx, known);
  registerDownstreamApiRoutes(app, ctx);
  registerValidateRoute(app, ctx);
  return app;
}
