import type { IncomingMessage, ServerResponse } from "node:http";
import type { Server } from "node:https";
import type { Socket } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { WEBHOOK_PATH } from "../api/constants.ts";
import type { Logger } from "../lib/log.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  deny,
  encodeReview,
  parseReview,
  reviewEnvelope,
} from "./admission.ts";
import { perLabels, type WebhookMetrics } from "./metrics.ts";

/**
 * The admission HTTPS server. It listens at once but completes no TLS handshake until a serving
 * certificate is loaded (`setCertificate`), and every later certificate replaces the server's default
 * secure context in place: new connections get it, open ones finish on the old one, no restart.
 */

/**
 * The largest AdmissionReview accepted. The API server reads no request body over 3 MiB (its
 * MaxRequestBodyBytes: twice etcd's default 1.5 MiB request limit, for JSON that shrinks to protobuf in
 * etcd), so a review carries at most two objects of that size (object, and oldObject on UPDATE of
 * pods/ephemeralcontainers) and its envelope. Anything larger is not from the API server; refusing it
 * early bounds what a forged review can make the webhook parse and hold.
 */
export const MAX_REVIEW_BYTES = 2 * 3 * 1024 * 1024 + 256 * 1024;

export type Reviewer = (
  request: AdmissionRequest,
) => Promise<{ response: AdmissionResponse; outcome: string; reason: string }>;

export interface AdmissionServerOptions {
  host: string;
  port: number;
  review: Reviewer;
  logger: Logger;
  metrics: WebhookMetrics;
  /** Extra readiness (caches synced); the server adds "a certificate is loaded". */
  ready?: () => boolean;
  /** More routes on the same server (the guard's, guard-route.ts), registered before it listens. */
  routes?: ReadonlyArray<(app: FastifyInstance) => void>;
}

export interface AdmissionServer {
  app: FastifyInstance;
  port(): number;
  setCertificate(certPem: string, keyPem: string): void;
  hasCertificate(): boolean;
  ready(): boolean;
  close(): Promise<void>;
}

export async function startAdmissionServer(options: AdmissionServerOptions): Promise<AdmissionServer> {
  const { logger, metrics } = options;
  const reviewed = perLabels((outcome, reason) => metrics.reviews.labels(outcome, reason));
  const timed = perLabels((outcome) => metrics.duration.labels(outcome));
  let loaded = false;
  const app = Fastify({
    https: {},
    logger: false,
    bodyLimit: MAX_REVIEW_BYTES,
    // A stuck client must not hold a socket: the API server's own timeout is at most 30 s.
    requestTimeout: 30_000,
    return503OnClosing: true,
  });
  app.setErrorHandler((err, _request, reply) => {
    const error = err as { statusCode?: number; message?: string };
    const status = typeof error.statusCode === "number" && error.statusCode >= 400 ? error.statusCode : 500;
    // fastify's errors for a body that is too large or not JSON; nothing else gets here but bugs.
    const message =
      status === 500
        ? "internal error"
        : status === 413
          ? `the AdmissionReview is larger than ${MAX_REVIEW_BYTES} bytes, more than the API server sends`
          : String(error.message);
    if (status === 500) logger.error({ err: error.message }, "admission request failed");
    metrics.reviews.inc({ outcome: "invalid", reason: String(status) });
    return reply.code(status).type("application/problem+json").send({ title: message, status });
  });
  app.get("/readyz", async (_req, reply) => {
    const ok = loaded && (options.ready?.() ?? true);
    return reply.code(ok ? 200 : 503).send(ok ? "ok" : "not ready");
  });
  app.get("/healthz", async () => "ok");
  app.post(WEBHOOK_PATH, async (request, reply) => {
    const started = performance.now();
    const parsed = parseReview(request.body);
    if (!parsed.ok) {
      metrics.reviews.inc({ outcome: "invalid", reason: "" });
      logger.warn({ message: parsed.message }, "invalid AdmissionReview");
      if ("uid" in parsed) return reply.send(reviewEnvelope(deny(parsed.uid, parsed.message, 400)));
      return reply
        .code(parsed.httpStatus)
        .type("application/problem+json")
        .send({ title: parsed.message, status: parsed.httpStatus });
    }
    let result: Awaited<ReturnType<Reviewer>>;
    try {
      result = await options.review(parsed.request);
    } catch (error) {
      // Fail closed with a reason; the API server shows it to the client.
      logger.error({ err: (error as Error).message, uid: parsed.request.uid }, "admission review failed");
      result = {
        response: deny(
          parsed.request.uid,
          "the webhook could not judge this pod (internal error); try again",
          500,
        ),
        outcome: "error",
        reason: "",
      };
    }
    reviewed(result.outcome, result.reason).inc();
    timed(result.outcome).observe((performance.now() - started) / 1e3);
    // The answer's text, built once: fastify sends a string as it is, with its Content-Length, in one write.
    return reply.type("application/json; charset=utf-8").send(encodeReview(result.response));
  });
  for (const route of options.routes ?? []) route(app);
  await app.listen({ host: options.host, port: options.port });
  const server = app.server as Server;
  const closeConnections = trackConnections(server);
  return {
    app,
    port() {
      const address = server.address();
      return typeof address === "object" && address ? address.port : options.port;
    },
    setCertificate(certPem, keyPem) {
      server.setSecureContext({ cert: certPem, key: keyPem });
      loaded = true;
    },
    hasCertificate: () => loaded,
    ready: () => loaded && (options.ready?.() ?? true),
    async close() {
      const closed = app.close();
      closeConnections();
      await closed;
    },
  };
}

/**
 * Lets `close` end keep-alive connections without waiting for the client. The API server's HTTP client
 * dials a spare connection while a busy one is in use and may never send a request on it; Node counts a
 * connection as idle only once it has carried a request (its parser starts "active", so that
 * headersTimeout covers a client that connects and sends nothing), so close() and closeIdleConnections()
 * leave such a connection open until the client's own idle timeout (90 s), which held a replica's shutdown
 * (and a test) that long. A connection mid-handshake is not known to the HTTP server at all yet.
 * Returns the function `close` calls: connections without a request in flight end at once (a handshake
 * not finished yet: dropped), the others right after their answer. Connections are known by the peer's
 * address and port, the same for the TCP and TLS sockets; requests find theirs by their TLS socket (no
 * address lookup per request).
 */
function trackConnections(server: Server): () => void {
  interface Connection {
    tcp: Socket;
    tls?: Socket;
    inFlight: number;
  }
  const open = new Map<string, Connection>();
  const byTls = new WeakMap<Socket, Connection>();
  const key = (socket: Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  let closing = false;
  server.on("connection", (tcp: Socket) => {
    const k = key(tcp);
    open.set(k, { tcp, inFlight: 0 });
    tcp.once("close", () => open.delete(k));
  });
  server.on("secureConnection", (tls: Socket) => {
    const connection = open.get(key(tls));
    if (!connection) return;
    connection.tls = tls;
    byTls.set(tls, connection);
  });
  // One function for every response, not a closure each: a request costs a listener slot, and nothing
  // keeps its response alive once it has closed. (Keeping the last response on the connection's record
  // instead kept each answer's objects alive until the next request on that connection, long enough to
  // be promoted to the old generation: twice the full GCs of the echo route at a fixed load, which
  // doubled the webhook's p99 there; docs/benchmarks.md.)
  function responseClosed(this: ServerResponse) {
    const connection = byTls.get(this.req.socket as Socket);
    if (!connection) return;
    connection.inFlight -= 1;
    if (closing && connection.inFlight === 0) connection.tls?.destroySoon();
  }
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const connection = byTls.get(request.socket);
    if (!connection) return;
    connection.inFlight += 1;
    response.on("close", responseClosed);
  });
  return () => {
    closing = true;
    for (const connection of open.values()) {
      if (connection.inFlight > 0) continue;
      if (connection.tls) connection.tls.destroySoon();
      else connection.tcp.destroy();
    }
  };
}
