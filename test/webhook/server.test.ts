import { Registry } from "prom-client";
import { Agent, request } from "undici";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/log.ts";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
} from "../../src/lib/pki.ts";
import { allow, deny } from "../../src/webhook/admission.ts";
import { createWebhookMetrics } from "../../src/webhook/metrics.ts";
import { type AdmissionServer, MAX_REVIEW_BYTES, startAdmissionServer } from "../../src/webhook/server.ts";

/** The admission server over real HTTPS: certificate gating and reload, and bad input. */

let ca: CertificateAuthority;
let leaf: { certPem: string; keyPem: string };
let server: AdmissionServer | undefined;
const agents: Agent[] = [];

beforeAll(async () => {
  ca = await createCertificateAuthority("test-ca");
  leaf = await issueCertificate(ca, { commonName: "127.0.0.1", ipAddresses: ["127.0.0.1"], usage: "server" });
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

async function start(registry = new Registry()) {
  server = await startAdmissionServer({
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ name: "test", level: "silent" }),
    metrics: createWebhookMetrics(registry),
    review: async (req) =>
      req.namespace === "refuse"
        ? {
            response: deny(req.uid, [{ reason: "HostNetwork", message: "no" }]),
            outcome: "refused",
            reason: "HostNetwork",
          }
        : {
            response: allow(req.uid, [{ op: "add", path: "/metadata/labels", value: { a: "b" } }]),
            outcome: "injected",
            reason: "",
          },
  });
  return server;
}

function client(caPem: string): Agent {
  const agent = new Agent({ connect: { ca: caPem } });
  agents.push(agent);
  return agent;
}

async function post(s: AdmissionServer, body: string, caPem = ca.certPem, contentType = "application/json") {
  const res = await request(`https://127.0.0.1:${s.port()}/mutate-v1-pod`, {
    method: "POST",
    body,
    headers: { "content-type": contentType },
    dispatcher: client(caPem),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

function review(overrides: Record<string, unknown> = {}, request: Record<string, unknown> = {}) {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "u-1",
      operation: "CREATE",
      namespace: "ns",
      resource: { group: "", version: "v1", resource: "pods" },
      object: { metadata: { generateName: "web-" }, spec: { containers: [] } },
      ...request,
    },
    ...overrides,
  });
}

describe("admission server", () => {
  it("completes no handshake and is not ready until a certificate is loaded, then serves it", async () => {
    const s = await start();
    expect(s.ready()).toBe(false);
    await expect(post(s, review())).rejects.toThrow();
    s.setCertificate(leaf.certPem, leaf.keyPem);
    expect(s.ready()).toBe(true);
    const { status, json } = await post(s, review());
    expect(status).toBe(200);
    const response = json.response as Record<string, unknown>;
    expect(response).toMatchObject({ uid: "u-1", allowed: true, patchType: "JSONPatch" });
    expect(JSON.parse(Buffer.from(String(response.patch), "base64").toString())).toEqual([
      { op: "add", path: "/metadata/labels", value: { a: "b" } },
    ]);
  });

  it("reloads a new certificate from another CA without a restart", async () => {
    const s = await start();
    s.setCertificate(leaf.certPem, leaf.keyPem);
    expect((await post(s, review())).status).toBe(200);
    const ca2 = await createCertificateAuthority("test-ca-2");
    const leaf2 = await issueCertificate(ca2, {
      commonName: "127.0.0.1",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    s.setCertificate(leaf2.certPem, leaf2.keyPem);
    expect((await post(s, review(), ca2.certPem)).status).toBe(200);
    await expect(post(s, review(), ca.certPem)).rejects.toThrow(); // a fresh connection gets the new leaf
  });

  it("answers bad input with a clear error, never a crash", async () => {
    const s = await start();
    s.setCertificate(leaf.certPem, leaf.keyPem);
    const notJson = await post(s, "{not json");
    expect(notJson.status).toBe(400);
    const wrongKind = await post(s, review({ kind: "Pod" }));
    expect(wrongKind.status).toBe(400);
    expect(String(wrongKind.json.title)).toContain("AdmissionReview");
    const wrongVersion = await post(s, review({ apiVersion: "admission.k8s.io/v1beta1" }));
    expect(wrongVersion.status).toBe(400);
    const noUid = await post(s, review({}, { uid: "" }));
    expect(noUid.status).toBe(400);
    const array = await post(s, "[]");
    expect(array.status).toBe(400);
    const noObject = await post(s, review({}, { object: null }));
    expect(noObject.status).toBe(200);
    expect(noObject.json.response).toMatchObject({ uid: "u-1", allowed: false });
    expect(JSON.stringify(noObject.json.response)).toContain("no pod object");
    const otherResource = await post(
      s,
      review({}, { resource: { group: "apps", version: "v1", resource: "deployments" } }),
    );
    expect(otherResource.json.response).toMatchObject({ allowed: false });
    const big = await post(
      s,
      review({}, { object: { spec: { containers: [], pad: "x".repeat(MAX_REVIEW_BYTES) } } }),
    );
    expect(big.status).toBe(413);
    const text = await post(s, review(), ca.certPem, "text/plain");
    expect(text.status).toBe(400); // fastify reads text/plain as a string: not an object
    // Still serving after all that.
    expect((await post(s, review())).status).toBe(200);
  });

  it("refuses a review larger than the API server sends with a 413 that says so, and keeps serving", async () => {
    const s = await start();
    s.setCertificate(leaf.certPem, leaf.keyPem);
    // Two objects at the API server's 3 MiB request limit (object, and oldObject on UPDATE) still fit.
    const largest = review({}, { object: { spec: { containers: [], pad: "x".repeat(3 * 1024 * 1024) } } });
    const twice = review(
      {},
      {
        object: { spec: { containers: [], pad: "x".repeat(3 * 1024 * 1024 - 100) } },
        oldObject: { spec: { containers: [], pad: "y".repeat(3 * 1024 * 1024 - 100) } },
      },
    );
    expect(Buffer.byteLength(twice)).toBeLessThanOrEqual(MAX_REVIEW_BYTES);
    expect((await post(s, largest)).status).toBe(200);
    expect((await post(s, twice)).status).toBe(200);
    const over = review({}, { object: { spec: { containers: [], pad: "x".repeat(MAX_REVIEW_BYTES) } } });
    const big = await post(s, over);
    expect(big.status).toBe(413);
    expect(big.json).toEqual({
      title: `the AdmissionReview is larger than ${MAX_REVIEW_BYTES} bytes, more than the API server sends`,
      status: 413,
    });
    expect((await post(s, review())).status).toBe(200);
  });

  it("counts reviews by outcome and reason", async () => {
    const registry = new Registry();
    const s = await start(registry);
    s.setCertificate(leaf.certPem, leaf.keyPem);
    await post(s, review());
    const refused = await post(s, review({}, { namespace: "refuse" }));
    expect(refused.json.response).toMatchObject({
      allowed: false,
      status: { code: 403, message: "agentid: no" },
    });
    await post(s, "{");
    const text = await registry.metrics();
    expect(text).toContain('agentid_webhook_reviews_total{outcome="injected",reason=""} 1');
    expect(text).toContain('agentid_webhook_reviews_total{outcome="refused",reason="HostNetwork"} 1');
    expect(text).toContain('agentid_webhook_reviews_total{outcome="invalid",reason="400"} 1');
    expect(text).toMatch(/agentid_webhook_review_duration_seconds_count\{outcome="injected"\} 1/);
  });
});
