import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import { expect, it } from "vitest";
import { ANNOTATION_CA_PUBLISHED, MWC_PATH, secretPath } from "../../src/webhook/certificate-manager.ts";
import {
  createReadyIdentity,
  createTestBlueprint,
  useTestWebhook,
  useWebhookControlPlane,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * Certificate rotation while the API server keeps calling: a new leaf, then a new CA (published in the
 * caBundle first, its leaf served only after the propagation time), with not one failed admission.
 */

const { run, cp } = useWebhookControlPlane("rotation");
const hook = useTestWebhook(cp, { run, caPropagationMs: 1500 });
/** A second replica: never the leader, it only loads what the leader writes into the Secret. */
const follower = useTestWebhook(cp, { run, follower: true });

/** The certificate the webhook serves to a new connection right now. */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (cert) resolve(cert);
      else reject(new Error("no peer certificate"));
    });
    socket.on("error", reject);
  });
}

interface SecretData {
  metadata: { annotations?: Record<string, string> };
  data: Record<string, string>;
}
const decode = (s: SecretData, key: string) => Buffer.from(s.data[key] ?? "", "base64").toString();

it("rotates the leaf and then the CA without a failed admission; every replica reloads", async () => {
  const ns = cp.namespace;
  await createTestBlueprint(hook.kube, ns);
  await createReadyIdentity(hook.kube, ns, "research-agent");
  await waitUntilServed(hook.kube, ns, "research-agent");
  const secret = () => hook.kube.get<SecretData>(secretPath(hook.managerNamespace, "agentid-webhook-tls"));
  const bundle = async () => {
    const config = await hook.kube.get<{ webhooks: Array<{ clientConfig: { caBundle: string } }> }>(
      `${MWC_PATH}/${hook.configurationName}`,
    );
    return config.webhooks.map((w) => Buffer.from(w.clientConfig.caBundle, "base64").toString());
  };
  const first = await servedCertificate(hook.webhook.port());
  const firstCa = decode(await secret(), "ca.crt");

  // The API server keeps admitting pods (dry-run: nothing is stored) from four clients the whole time.
  let stop = false;
  let admitted = 0;
  const failures: string[] = [];
  const client = async () => {
    while (!stop) {
      try {
        const pod = await hook.kube.request<{ spec: { initContainers?: Array<{ name: string }> } }>(
          "POST",
          `/api/v1/namespaces/${ns}/pods`,
          {
            query: { dryRun: "All" },
            body: {
              apiVersion: "v1",
              kind: "Pod",
              metadata: { generateName: "load-", labels: { "agentid.io/inject": "true" } },
              spec: { serviceAccountName: "research-agent", containers: [{ name: "app", image: "app:1" }] },
            },
          },
        );
        if (pod.spec.initContainers?.[0]?.name !== "agentid-sidecar")
          failures.push("admitted without the sidecar");
        admitted++;
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
  };
  const clients = Array.from({ length: 4 }, client);
  try {
    // 1. A new leaf from the same CA: served at once, the bundle unchanged.
    await hook.webhook.certificates.ensure(hook.kube, { force: "leaf" });
    const second = await servedCertificate(hook.webhook.port());
    expect(second.fingerprint256).not.toBe(first.fingerprint256);
    // The other replica reloads it from the Secret, without a restart.
    await expect
      .poll(async () => (await servedCertificate(follower.webhook.port())).fingerprint256)
      .toBe(second.fingerprint256);
    expect(second.checkIssued(new X509Certificate(firstCa))).toBe(true);
    const mark = admitted;
    await expect.poll(() => admitted, { timeout: 30_000 }).toBeGreaterThan(mark + 20);

    // 2. A new CA: first only into the bundle (beside the old one) while the old leaf is still served...
    await hook.webhook.certificates.ensure(hook.kube, { force: "ca" });
    const rotated = await secret();
    const newCa = decode(rotated, "ca.crt");
    expect(newCa).not.toBe(firstCa);
    expect(decode(rotated, "ca-previous.crt")).toBe(firstCa);
    for (const b of await bundle()) {
      expect(b).toContain(newCa.trim());
      expect(b).toContain(firstCa.trim());
    }
    expect((await servedCertificate(hook.webhook.port())).fingerprint256).toBe(second.fingerprint256);
    // ...then, once the bundle has had time to reach the API server, a leaf of the new CA.
    await expect
      .poll(
        async () => (await servedCertificate(hook.webhook.port())).checkIssued(new X509Certificate(newCa)),
        {
          timeout: 20_000,
        },
      )
      .toBe(true);
    const third = await servedCertificate(hook.webhook.port());
    expect(third.fingerprint256).not.toBe(second.fingerprint256);
    await expect
      .poll(async () => (await servedCertificate(follower.webhook.port())).fingerprint256)
      .toBe(third.fingerprint256);
    expect((await secret()).metadata.annotations?.[ANNOTATION_CA_PUBLISHED]).toBeDefined();
    const mark2 = admitted;
    await expect.poll(() => admitted, { timeout: 30_000 }).toBeGreaterThan(mark2 + 20);
  } finally {
    stop = true;
    await Promise.all(clients);
  }
  expect(failures).toEqual([]);
  expect(admitted).toBeGreaterThan(40);
});
