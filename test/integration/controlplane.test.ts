import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from "jose";
import { Agent, request } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  applyCrd,
  createNamespace,
  createServiceAccountToken,
  deleteMutatingWebhook,
  deleteValidatingWebhook,
  registerMutatingWebhook,
  registerValidatingWebhook,
} from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, isApiError } from "../../src/kube/client.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { useControlPlane } from "../support/controlplane.ts";

const cp = useControlPlane({ namespaceLabels: { "agentid.io/test": "controlplane" } });
const kube = createKubeClient(cp.kubeConfig);
afterAll(() => kube.close());

interface Pod {
  metadata?: { name?: string; annotations?: Record<string, string> };
  spec?: unknown;
}

/** Fetches JSON from the apiserver WITHOUT credentials, trusting only the harness CA. */
async function anonymousJson(url: string): Promise<{ status: number; body: unknown }> {
  const agent = new Agent({ connect: { ca: cp.caPem } });
  try {
    const res = await request(url, { dispatcher: agent });
    const text = await res.body.text();
    return { status: res.statusCode, body: JSON.parse(text) };
  } finally {
    await agent.close();
  }
}

/** The apiserver's status code and Status.message for a request it must refuse. */
async function rejection(promise: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (!isApiError(error)) throw error;
    return { status: error.status, message: error.message };
  }
  throw new Error("expected the apiserver to reject the request, but it accepted it");
}

describe("local control plane", () => {
  it("creates and reads a namespace", async () => {
    const ns = await kube.get<{ metadata: { labels?: Record<string, string> }; status?: { phase?: string } }>(
      `/api/v1/namespaces/${cp.namespace}`,
    );
    expect(ns.metadata.labels?.["agentid.io/test"]).toBe("controlplane");
    expect(ns.status?.phase).toBe("Active");
    const version = await anonymousJson(`${cp.server}/version`);
    expect((version.body as { gitVersion?: string }).gitVersion).toMatch(/^v1\.\d+\.\d+/);
  });

  it("establishes a CRD and validates custom objects with its schema and CEL rules", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "widgets.controlplane-test.agentid.io" },
      spec: {
        group: "controlplane-test.agentid.io",
        scope: "Namespaced",
        names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                properties: {
                  spec: {
                    type: "object",
                    required: ["size"],
                    properties: { size: { type: "integer", minimum: 1 }, colour: { type: "string" } },
                    "x-kubernetes-validations": [
                      { rule: "self.size <= 10 || has(self.colour)", message: "big widgets need a colour" },
                    ],
                  },
                },
              },
            },
          },
        ],
      },
    };
    const applied = (await applyCrd(cp.kubeConfig, crd)) as {
      status?: { conditions?: { type: string; status: string }[] };
    };
    expect(applied.status?.conditions?.find((c) => c.type === "Established")?.status).toBe("True");

    const widgets = `/apis/controlplane-test.agentid.io/v1/namespaces/${cp.namespace}/widgets`;
    const create = (name: string, spec: Record<string, unknown>) =>
      kube.create(widgets, {
        apiVersion: "controlplane-test.agentid.io/v1",
        kind: "Widget",
        metadata: { name },
        spec,
      });

    await create("good", { size: 3 });
    const read = await kube.get<{ spec?: { size?: number } }>(`${widgets}/good`);
    expect(read.spec?.size).toBe(3);

    const tooSmall = await rejection(create("too-small", { size: 0 }));
    expect(tooSmall.status).toBe(422);
    expect(tooSmall.message).toContain("spec.size");
    expect(tooSmall.message).toContain("should be greater than or equal to 1");

    const missing = await rejection(create("missing", {}));
    expect(missing.message).toContain("spec.size: Required value");

    const cel = await rejection(create("big", { size: 11 }));
    expect(cel.message).toContain("big widgets need a colour");
  });

  it("issues TokenRequest tokens that verify against the issuer's discovery document and JWKS", async () => {
    const audience = "api://AzureADTokenExchange";
    const { token, expirationTimestamp } = await createServiceAccountToken(cp.kubeConfig, {
      namespace: cp.namespace,
      serviceAccount: "agent",
      audience,
      expirationSeconds: 600,
    });
    expect(expirationTimestamp.getTime()).toBeGreaterThan(Date.now());

    // A relying party (the operator) reads discovery without credentials, over https on loopback.
    const discovery = await anonymousJson(`${cp.issuerUrl}/.well-known/openid-configuration`);
    expect(discovery.status).toBe(200);
    const doc = discovery.body as { issuer?: string; jwks_uri?: string };
    expect(doc.issuer).toBe(cp.issuerUrl);
    expect(doc.jwks_uri).toBe(`${cp.issuerUrl}/openid/v1/jwks`);
    const jwks = await anonymousJson(doc.jwks_uri ?? "");
    expect(jwks.status).toBe(200);

    const keys = createLocalJWKSet(jwks.body as JSONWebKeySet);
    const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: doc.issuer, audience });
    expect(protectedHeader.alg).toBe("RS256");
    expect(payload.sub).toBe(`system:serviceaccount:${cp.namespace}:agent`);
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(600);

    await expect(jwtVerify(token, keys, { issuer: doc.issuer, audience: "someone-else" })).rejects.toThrow(
      /aud/,
    );
    await expect(
      createServiceAccountToken(cp.kubeConfig, {
        namespace: cp.namespace,
        serviceAccount: "agent",
        audience,
        expirationSeconds: 599,
      }),
    ).rejects.toThrow(/>= 600/);
  });

  describe("admission", () => {
    let server: Server | undefined;
    let webhookName: string | undefined;
    afterEach(async () => {
      if (webhookName) await deleteMutatingWebhook(cp.kubeConfig, webhookName);
      if (webhookName) await deleteValidatingWebhook(cp.kubeConfig, webhookName);
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
      server = undefined;
      webhookName = undefined;
    });

    it("calls mutating and validating webhooks served over HTTPS for a pod create", async () => {
      const ca = await createCertificateAuthority("webhook test CA");
      const serving = await issueCertificate(ca, {
        commonName: "webhook",
        ipAddresses: ["127.0.0.1"],
        usage: "server",
      });
      interface Seen {
        path: string;
        name: string;
        namespace: string;
        dryRun: boolean;
        annotations: Record<string, string>;
      }
      const seen: Seen[] = [];
      server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const review = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
            request: { uid: string; namespace: string; dryRun?: boolean; object: Pod };
          };
          const r = review.request;
          const labels = (r.object.metadata as { labels?: Record<string, string> } | undefined)?.labels ?? {};
          seen.push({
            // The apiserver appends ?timeout=<timeoutSeconds>s to the configured URL.
            path: new URL(req.url ?? "/", "https://127.0.0.1").pathname,
            name: r.object.metadata?.name ?? "",
            namespace: r.namespace,
            dryRun: !!r.dryRun,
            annotations: r.object.metadata?.annotations ?? {},
          });
          const patch = [
            { op: "add", path: "/metadata/annotations", value: { "controlplane-test/mutated": "yes" } },
          ];
          const response =
            seen.at(-1)?.path === "/mutate"
              ? {
                  allowed: true,
                  patchType: "JSONPatch",
                  patch: Buffer.from(JSON.stringify(patch)).toString("base64"),
                }
              : labels.deny === "yes"
                ? {
                    allowed: false,
                    status: { code: 403, message: "denied by the test's validating webhook" },
                  }
                : { allowed: true };
          res.setHeader("content-type", "application/json");
          res.end(
            JSON.stringify({
              apiVersion: "admission.k8s.io/v1",
              kind: "AdmissionReview",
              response: { uid: r.uid, ...response },
            }),
          );
        });
      });
      await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as AddressInfo).port;

      webhookName = `admission-${cp.namespace}`;
      // Only this test's namespace: other test files share the control plane.
      const webhook = { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": cp.namespace } } };
      const common = { name: webhookName, caPem: ca.certPem, webhook };
      await registerMutatingWebhook(cp.kubeConfig, { ...common, url: `https://127.0.0.1:${port}/mutate` });
      await registerValidatingWebhook(cp.kubeConfig, {
        ...common,
        url: `https://127.0.0.1:${port}/validate`,
      });

      const pods = `/api/v1/namespaces/${cp.namespace}/pods`;
      const pod = (name: string, labels: Record<string, string> = {}) => ({
        metadata: { name, labels },
        spec: { containers: [{ name: "app", image: "registry.k8s.io/pause:3.10" }] },
      });
      // The apiserver picks up new webhook configurations asynchronously: probe with dry runs until it calls both.
      const calledBoth = () =>
        ["/mutate", "/validate"].every((p) => seen.some((s) => s.dryRun && s.path === p));
      await expect
        .poll(
          async () => {
            await kube.create(pods, pod("probe"), { dryRun: "All" });
            return calledBoth() ? true : `calls so far: ${seen.map((c) => c.path).join(", ") || "none"}`;
          },
          { message: "the apiserver to call both webhooks", timeout: 20_000, interval: 200 },
        )
        .toBe(true);

      const created = await kube.create<Pod>(pods, pod("app"));
      const real = seen.filter((s) => !s.dryRun);
      expect(real.map((s) => s.path)).toEqual(["/mutate", "/validate"]);
      expect(real[0]).toMatchObject({ namespace: cp.namespace, name: "app" });
      // Validation sees the mutated object, and the stored pod carries the patch.
      expect(real[1]?.annotations["controlplane-test/mutated"]).toBe("yes");
      expect(created.metadata?.annotations?.["controlplane-test/mutated"]).toBe("yes");

      const denied = await rejection(kube.create(pods, pod("denied", { deny: "yes" })));
      expect(denied.status).toBe(403);
      expect(denied.message).toContain("denied by the test's validating webhook");
    });

    it("enforces PodSecurity restricted on a labelled namespace", async () => {
      const namespace = `${cp.namespace}-restricted`;
      await createNamespace(cp.kubeConfig, namespace, { "pod-security.kubernetes.io/enforce": "restricted" });
      const pods = `/api/v1/namespaces/${namespace}/pods`;

      const privileged = await rejection(
        kube.create(pods, {
          metadata: { name: "privileged" },
          spec: { containers: [{ name: "c", image: "busybox", securityContext: { privileged: true } }] },
        }),
      );
      expect(privileged.status).toBe(403);
      expect(privileged.message).toContain('violates PodSecurity "restricted:latest"');
      expect(privileged.message).toContain("privileged");

      // The same namespace accepts a compliant pod, so the rejection above is PodSecurity, not something else.
      const compliant = await kube.create<Pod>(pods, {
        metadata: { name: "compliant" },
        spec: {
          securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
          containers: [
            {
              name: "c",
              image: "busybox",
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
            },
          ],
        },
      });
      expect(compliant.metadata?.name).toBe("compliant");
    });
  });
});
