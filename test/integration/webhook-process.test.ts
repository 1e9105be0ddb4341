import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { MWC_PATH } from "../../src/webhook/certificate-manager.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { ensureCrd } from "./operator-support.ts";
import {
  CONFIGURATION_PATHS,
  type ConfigurationKind,
  createReadyIdentity,
  createTestBlueprint,
  newRun,
  renderConfiguration,
} from "./webhook-support.ts";

/**
 * `agentid manager --sidecar-image …` as a real process: the webhook is wired into the manager (shared
 * caches, leader-kept certificate and caBundle, /readyz), and the API server injects through it.
 */
const run = newRun();
const cp = useControlPlane({ namespacePrefix: "whproc", namespaceLabels: { "agentid-test-run": run } });
const kube = createKubeClient(cp.kubeConfig);
beforeAll(() => ensureCrd(cp.kubeConfig));
afterAll(() => kube.close());

interface Pod {
  metadata: { annotations?: Record<string, string> };
  spec: { initContainers?: Array<{ name: string; image?: string }> };
}

function startManagerProcess(args: string[]) {
  const cli = new URL("../../bin/agentid.js", import.meta.url).pathname;
  // No /metrics server: its default port may be taken on a shared machine.
  const base = [cli, "manager", "--kubeconfig", cp.kubeconfigPath, "--metrics-bind-address", "0"];
  const child = spawn(process.execPath, [...base, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (c) => {
    out.stdout += c;
  });
  child.stderr.on("data", (c) => {
    out.stderr += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  // A test that times out abandons its body (its `finally` waits for the pending call): never leave the
  // manager running after the test.
  onTestFinished(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return { child, out, exited };
}

// A manager process starts slowly on a loaded 2-core machine; each test waits for one.
describe("agentid manager with the webhook", { timeout: 180_000 }, () => {
  it("serves admission reviews once its leader has issued the certificate, and stops on SIGTERM", async () => {
    const ns = cp.namespace;
    // The manager's own namespace (the webhook never sees it), where its Lease and Secret live.
    const own = `agentid-system-${run}`;
    await createNamespace(cp.kubeConfig, own);
    const configuration = `agentid-webhook-${run}`;
    const { child, out, exited } = startManagerProcess([
      // The operator reconciles only its own namespace here, so it leaves the test's hand-written Ready status alone.
      "--namespace",
      own,
      "--lease-namespace",
      own,
      "--no-verify",
      "--health-host",
      "127.0.0.1",
      "--health-port",
      "0",
      "--sidecar-image",
      "ghcr.io/agentid/sidecar:process-test",
      "--webhook-host",
      "127.0.0.1",
      "--webhook-port",
      "0",
      "--webhook-configuration",
      configuration,
      "--webhook-cert-extra-names",
      "127.0.0.1",
    ]);
    try {
      const port = async () =>
        Number(/"port":(\d+),"msg":"admission server listening"/.exec(out.stdout)?.[1] ?? 0);
      await expect
        .poll(port, { timeout: 60_000, message: `the admission server to listen\n${out.stderr}` })
        .toBeGreaterThan(0);
      for (const [kind, path] of Object.entries(CONFIGURATION_PATHS)) {
        await kube.create(
          path,
          renderConfiguration(
            configuration,
            own,
            `https://127.0.0.1:${await port()}`,
            run,
            kind as ConfigurationKind,
          ),
        );
      }
      const caBundle = async () =>
        (
          await kube.get<{ webhooks: Array<{ clientConfig: { caBundle?: string } }> }>(
            `${MWC_PATH}/${configuration}`,
          )
        ).webhooks[0]?.clientConfig.caBundle ?? "";
      await expect
        .poll(caBundle, { timeout: 60_000, message: "the leader to write the caBundle" })
        .not.toBe("");
      await createTestBlueprint(kube, ns);
      await createReadyIdentity(kube, ns, "research-agent");
      const create = () =>
        kube.create<Pod>(`/api/v1/namespaces/${ns}/pods`, {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { generateName: "agent-", labels: { "agentid.io/inject": "true" } },
          spec: { serviceAccountName: "research-agent", containers: [{ name: "app", image: "app:1" }] },
        });
      await expect
        .poll(async () => (await create()).spec.initContainers?.[0]?.image, { timeout: 30_000 })
        .toBe("ghcr.io/agentid/sidecar:process-test");
      expect(out.stdout).toContain('"msg":"sidecar injected"');
    } finally {
      child.kill("SIGTERM");
      for (const path of Object.values(CONFIGURATION_PATHS))
        await kube.delete(`${path}/${configuration}`).catch(() => undefined);
    }
    expect(await exited, `exit status; stderr: ${out.stderr.slice(-2000)}`).toBe(0);
    expect(out.stdout).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./); // no token in the logs
  });

  it("with --webhook-cert-mode external stays unready until someone else writes the Secret, then serves it", async () => {
    const own = `agentid-ext-${run}`;
    await createNamespace(cp.kubeConfig, own);
    const { child, out, exited } = startManagerProcess([
      "--namespace",
      own,
      "--lease-namespace",
      own,
      "--no-verify",
      "--health-host",
      "127.0.0.1",
      "--health-port",
      "0",
      "--sidecar-image",
      "ghcr.io/agentid/sidecar:process-test",
      "--webhook-host",
      "127.0.0.1",
      "--webhook-port",
      "0",
      "--webhook-cert-mode",
      "external",
    ]);
    try {
      const health = async () => /"url":"(http:\/\/[^"]+)"/.exec(out.stdout)?.[1] ?? "";
      await expect.poll(health, { timeout: 90_000, message: "the manager to start" }).not.toBe("");
      const readyz = async () => {
        const res = await fetch(`${await health()}/readyz`);
        return `${res.status} ${await res.text()}`;
      };
      // Nobody issues a certificate in this mode: not ready, and the body says which part waits.
      expect(await readyz()).toMatch(/^503 .*webhook/);
      const ca = await createCertificateAuthority("cert-manager-like");
      const leaf = await issueCertificate(ca, {
        commonName: "127.0.0.1",
        ipAddresses: ["127.0.0.1"],
        usage: "server",
      });
      await kube.create(`/api/v1/namespaces/${own}/secrets`, {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "agentid-webhook-tls" },
        type: "kubernetes.io/tls",
        stringData: { "tls.crt": leaf.certPem, "tls.key": leaf.keyPem, "ca.crt": ca.certPem },
      });
      await expect.poll(readyz, { timeout: 30_000 }).toBe("200 ok");
      const port = Number(/"port":(\d+),"msg":"admission server listening"/.exec(out.stdout)?.[1] ?? 0);
      const served = await new Promise<string>((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port, ca: ca.certPem }, () => {
          resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? "");
          socket.end();
        });
        socket.on("error", reject);
      });
      expect(served).toBe(new X509Certificate(leaf.certPem).fingerprint256);
      expect(out.stdout).not.toContain('"msg":"issuing the webhook');
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited, `exit status; stderr: ${out.stderr.slice(-2000)}`).toBe(0);
  });
});
