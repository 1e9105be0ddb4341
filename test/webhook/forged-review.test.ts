import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import type { KubeMethod, RequestOptions } from "../../src/kube/client.ts";
import { createLogger } from "../../src/lib/log.ts";
import { type AdmissionRequest, encodeReview } from "../../src/webhook/admission.ts";
import { createRefusalRecorder, recordRefusalEvent } from "../../src/webhook/events.ts";
import type { NamespaceObject } from "../../src/webhook/reads.ts";
import { createReviewer } from "../../src/webhook/review.ts";
import { resolveTarget } from "../../src/webhook/target.ts";
import { kubeClientOver } from "../support/kube-stub.ts";
import { podCreateRequest, settings } from "./support.ts";

/**
 * An AdmissionReview posted straight to the webhook's port (it asks for no client certificate) carries
 * whatever its sender wrote: a namespace and an identity name of someone else's, a ServiceAccount name of
 * 5,000 characters with line breaks and ANSI escapes. The refusal names the identity, so it gets an Event:
 * neither that Event nor the answer may carry the sender's control characters or length. The reviewer,
 * the refusal recorder and the Event text are the real ones; the API server behind the recorder is an
 * in-memory transport that keeps every Event written.
 */

const docs = parseAllDocuments(
  readFileSync(new URL("../fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
).map((d) => d.toJSON());
const BLUEPRINT = docs.find((d) => d.kind === "AgentIdentityBlueprint") as AgentIdentityBlueprint;
const IDENTITY = docs.find((d) => d.kind === "AgentIdentity") as AgentIdentity;
const NS = IDENTITY.metadata.namespace as string;
const NAMESPACE: NamespaceObject = {
  metadata: { name: NS, labels: { "agentid.io/blueprint": BLUEPRINT.metadata.name } },
};

// Anything a terminal or a log reader would act on.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what the test looks for
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const EVIL = `x\n\r\u001b[2J\u001b[31mFAKE: all pods admitted\u202e\u0007${"A".repeat(5000)}`;

function eventServer() {
  const written: Array<{ path: string; message?: string; reason?: string }> = [];
  const request = async <T>(method: KubeMethod, path: string, opts: RequestOptions = {}): Promise<T> => {
    if (method === "POST") {
      const body = opts.body as { message?: string; reason?: string };
      written.push({ path, ...body });
    }
    return opts.body as T;
  };
  const client = kubeClientOver(request);
  return { client, written };
}

function setup() {
  const { client, written } = eventServer();
  const logger = createLogger({ name: "forged", level: "silent" });
  const recorder = createRefusalRecorder({
    kubeConfig: { getCurrentCluster: () => ({ server: client.server }), applyToHTTPSOptions: async () => {} },
    client,
    logger,
  });
  const review = createReviewer({
    identities: {
      cached: (ns, name) => (ns === NS && name === IDENTITY.metadata.name ? IDENTITY : undefined),
      cachedList: (ns) => (ns === NS ? [IDENTITY] : []),
      // The API server holds what the cache holds (the one re-check before a refusal reads it).
      read: async (ns, name) => (ns === NS && name === IDENTITY.metadata.name ? IDENTITY : undefined),
      list: async (ns) => (ns === NS ? [IDENTITY] : []),
    },
    resolve: (identity, ns) =>
      resolveTarget({
        identity,
        blueprint: BLUEPRINT,
        namespace: { name: ns, labels: NAMESPACE.metadata.labels ?? {} },
        allowedAuthorityHosts: [],
      }),
    settings: () => settings(),
    logger,
    recordRefusal: (identity, refusals) => recordRefusalEvent(recorder, identity, refusals, "PodRefused"),
  });
  return { review, recorder, written };
}

function forged(pod: {
  serviceAccountName?: string;
  identity?: string;
  containers?: unknown[];
}): AdmissionRequest {
  return podCreateRequest({
    namespace: NS,
    uid: "forged-1",
    user: "mallory",
    name: "p",
    identity: pod.identity ?? IDENTITY.metadata.name,
    serviceAccountName: pod.serviceAccountName ?? IDENTITY.spec.serviceAccountName,
    ...(pod.containers ? { containers: pod.containers } : {}),
  });
}

/** What the API server would have got back: the answer's message, as it is encoded on the wire. */
function answered(response: Parameters<typeof encodeReview>[0]): string {
  const sent = JSON.parse(encodeReview(response)) as { response: { status?: { message?: string } } };
  return sent.response.status?.message ?? "";
}

describe("a forged review with control characters and huge strings", () => {
  it("ServiceAccountMismatch on someone else's identity: the Event and the answer are bounded and one clean line", async () => {
    const { review, recorder, written } = setup();
    const { response, reason } = await review(forged({ serviceAccountName: EVIL }));
    expect(reason).toBe("ServiceAccountMismatch");
    const message = answered(response);
    expect(message).not.toMatch(CONTROL);
    expect(message).toContain(`but the pod runs as x  ?[2J?[31mFAKE: all pods admitted??${"A".repeat(200)}`);
    // The name is cut where no real name is longer (253), so the answer stays short.
    expect(message.length).toBeLessThan(600);
    expect(message).not.toContain("A".repeat(300));
    await recorder.flush();
    expect(written).toHaveLength(1);
    const event = written[0];
    expect(event?.path).toBe(`/api/v1/namespaces/${NS}/events`);
    expect(event?.reason).toBe("PodRefused");
    expect(event?.message).not.toMatch(CONTROL);
    expect(event?.message?.startsWith("a pod was refused: AgentIdentity")).toBe(true);
    expect(event?.message).toContain("FAKE: all pods admitted");
    expect((event?.message ?? "").length).toBeLessThanOrEqual(1024);
    await recorder.close();
  });

  it("an identity name with control characters (no such identity): the answer quotes it cleaned and cut", async () => {
    const { review, written, recorder } = setup();
    const { response, reason } = await review(forged({ identity: EVIL }));
    expect(reason).toBe("IdentityNotFound");
    const message = answered(response);
    expect(message).not.toMatch(CONTROL);
    expect(message).not.toContain("A".repeat(300));
    await recorder.flush();
    // No identity found: nobody's Event.
    expect(written).toEqual([]);
    await recorder.close();
  });

  it("container and volume names with control characters: cut at 64, cleaned, in the answer and the Event", async () => {
    const { review, written, recorder } = setup();
    const { response } = await review(
      forged({ containers: [{ name: EVIL, image: "a:1", ports: [{ containerPort: 80, hostPort: 80 }] }] }),
    );
    const message = answered(response);
    expect(message).toContain("container 'x  ?[2J?[31mFAKE: all pods admitted??");
    expect(message).not.toMatch(CONTROL);
    expect(message).not.toContain("A".repeat(65));
    await recorder.flush();
    expect(written).toHaveLength(1);
    expect(written[0]?.message).not.toMatch(CONTROL);
    await recorder.close();
  });
});
