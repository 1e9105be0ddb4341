import type { ServerResponse } from "node:http";
import { createConnection } from "node:net";
import { connect } from "node:tls";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Registry } from "prom-client";
import { Agent, request } from "undici";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/log.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { allow } from "../../src/webhook/admission.ts";
import { createWebhookMetrics } from "../../src/webhook/metrics.ts";
import { startAdmissionServer } from "../../src/webhook/server.ts";

/**
 * Closing the admission server does not wait for its clients: a connection the API server opened and
 * never used (Go's HTTP client dials spares) is ended at once, and a review in flight is answered first.
 */

async function serverWith(review: () => Promise<void>) {
  const ca = await createCertificateAuthority("close-ca");
  const leaf = await issueCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const server = await startAdmissionServer({
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ name: "test", level: "silent" }),
    metrics: createWebhookMetrics(new Registry()),
    review: async (req) => {
      await review();
      return { response: allow(req.uid, []), outcome: "allowed", reason: "" };
    },
  });
  server.setCertificate(leaf.certPem, leaf.keyPem);
  return { server, ca };
}

const body = JSON.stringify({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "u-1",
    operation: "CREATE",
    namespace: "ns",
    resource: { group: "", version: "v1", resource: "pods" },
    object: { metadata: { name: "p" }, spec: { containers: [] } },
  },
});

describe("closing the admission server", () => {
  it("ends a connection that never carried a request instead of waiting for the client", async () => {
    const { server, ca } = await serverWith(async () => undefined);
    const socket = connect({ host: "127.0.0.1", port: server.port(), ca: ca.certPem });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // Without it, close() would wait for this client, which never sends anything nor hangs up.
    await server.close();
    await ended;
  });

  it("ends a connection whose TLS handshake has not finished", async () => {
    const { server } = await serverWith(async () => undefined);
    // A TCP connection that never starts its handshake: the HTTP server does not know it yet.
    const socket = createConnection({ host: "127.0.0.1", port: server.port() });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    // Without it, close() would wait for the TLS handshake timeout (120 s).
    await server.close();
    await ended;
  });

  it("answers a review in flight, then ends its keep-alive connection", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const { server, ca } = await serverWith(async () => {
      arrived();
      await gate;
    });
    const agent = new Agent({ connect: { ca: ca.certPem }, keepAliveTimeout: 600_000 });
    const answer = request(`https://127.0.0.1:${server.port()}/mutate-v1-pod`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      dispatcher: agent,
    });
    await reached;
    const closed = server.close();
    release();
    const res = await answer;
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { response: { allowed: boolean } }).response.allowed).toBe(true);
    await closed;
    await agent.close();
  });

  it("keeps nothing of an answered review alive on its keep-alive connection", async () => {
    // What the tracking keeps of a request must die with its answer: a response kept until the next
    // request on its connection was promoted to the old generation and doubled the webhook's full GCs.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const { server, ca } = await serverWith(async () => undefined);
    let answered: WeakRef<ServerResponse> | undefined;
    server.app.server.on("request", (_req, res: ServerResponse) => {
      answered = new WeakRef(res);
    });
    const agent = new Agent({ connect: { ca: ca.certPem }, keepAliveTimeout: 600_000 });
    const res = await request(`https://127.0.0.1:${server.port()}/mutate-v1-pod`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      dispatcher: agent,
    });
    expect(res.statusCode).toBe(200);
    await res.body.json();
    // The connection stays open (keep-alive); let the response's close event run, then collect.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    expect(answered).toBeDefined();
    expect(answered?.deref()).toBeUndefined();
    await server.close();
    await agent.close();
  });
});
