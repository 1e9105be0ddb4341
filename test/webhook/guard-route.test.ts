import { Registry } from "prom-client";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/log.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { GUARD_PATH } from "../../src/webhook/guard.ts";
import { guardRoute } from "../../src/webhook/guard-route.ts";
import { createWebhookMetrics } from "../../src/webhook/metrics.ts";
import { type AdmissionServer, startAdmissionServer } from "../../src/webhook/server.ts";
import { guardFor } from "./guard-support.ts";
import { settings } from "./support.ts";

/**
 * The guard's route on the real admission server over HTTPS (beside the mutating route): answers, bad
 * input, a failing review, and the metrics by kind, outcome and reason.
 */

let server: AdmissionServer;
let agent: Agent;
const registry = new Registry();
let failNext = false;

beforeAll(async () => {
  const ca = await createCertificateAuthority("guard-ca");
  const leaf = await issueCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const logger = createLogger({ name: "test", level: "silent" });
  const metrics = createWebhookMetrics(registry);
  const guard = guardFor(settings());
  server = await startAdmissionServer({
    host: "127.0.0.1",
    port: 0,
    logger,
    metrics,
    review: async () => {
      throw new Error("the mutating route is not under test");
    },
    routes: [
      guardRoute({
        review: async (r) => {
          if (failNext) {
            failNext = false;
            throw new Error("cache exploded");
          }
          return guard(r);
        },
        logger,
        metrics,
      }),
    ],
  });
  server.setCertificate(leaf.certPem, leaf.keyPem);
  agent = new Agent({ connect: { ca: ca.certPem } });
});
afterAll(async () => {
  await agent?.close();
  await server?.close();
});

async function post(body: unknown) {
  const res = await request(`https://127.0.0.1:${server.port()}${GUARD_PATH}`, {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json" },
    dispatcher: agent,
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

const execReview = (container: string) => ({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "u-9",
    operation: "CONNECT",
    namespace: "research",
    name: "research-1",
    resource: { group: "", version: "v1", resource: "pods" },
    subResource: "exec",
    object: { kind: "PodExecOptions", apiVersion: "v1", container, command: ["cat"] },
    userInfo: { username: "alice", groups: [] },
  },
});

describe("the guard's route", () => {
  it("answers a review with the guard's decision, in an AdmissionReview", async () => {
    const refused = await post(execReview("agentid-sidecar"));
    expect(refused.status).toBe(200);
    expect(refused.json).toMatchObject({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: "u-9", allowed: false, status: { code: 403, reason: "Forbidden" } },
    });
    expect((await post(execReview("app"))).json.response).toEqual({ uid: "u-9", allowed: true });
  });

  it("answers bad input with a clear error, and a failing review with a refusal to try again", async () => {
    expect((await post("{not json")).status).toBe(400);
    expect((await post({ apiVersion: "admission.k8s.io/v1", kind: "Pod" })).status).toBe(400);
    failNext = true;
    const failed = await post(execReview("app"));
    // Code and reason agree (a 500 is no BadRequest), and the audit annotation says it was ours.
    expect(failed.json.response).toMatchObject({
      allowed: false,
      status: { code: 500, reason: "InternalError" },
      auditAnnotations: { refused: "InternalError" },
    });
    expect(JSON.stringify(failed.json)).toContain("try again");
  });

  it("counts reviews by kind, outcome and reason", async () => {
    const text = await registry.getSingleMetricAsString("agentid_webhook_guard_reviews_total");
    expect(text).toContain('kind="exec",outcome="refused",reason="SidecarExec"} 1');
    expect(text).toContain('kind="exec",outcome="skipped",reason=""} 1');
    expect(text).toContain('kind="exec",outcome="error",reason=""} 1');
    expect(text).toMatch(/kind="",outcome="invalid",reason=""} [1-9]/);
  });
});
