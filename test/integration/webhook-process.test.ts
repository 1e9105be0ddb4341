import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { MWC_PATH } from "../../src/webhook/certificate-manager.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { ensureCrd } from "./operator-support.ts";
import { createReadyIdentity, createTestBlueprint, newRun, renderConfiguration } from "./webhook-support.ts";

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

describe("agentid manager with the webhook", () => {
  it("serves admission reviews once its leader has issued the certificate, and stops on SIGTERM", async () => {
    const ns = cp.namespace;
    // The manager's own namespace (the webhook never sees it), where its Lease and Secret live.
    const own = `agentid-system-${run}`;
    await createNamespace(cp.kubeConfig, own);
    const configuration = `agentid-webhook-${run}`;
    const cli = new URL("../../bin/agentid.js", import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [
        cli,
        "manager",
        "--kubeconfig",
        cp.kubeconfigPath,
        "--namespace",
        ns,
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
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const port = async () =>
        Number(/"port":(\d+),"msg":"admission server listening"/.exec(stdout)?.[1] ?? 0);
      await expect
        .poll(port, { timeout: 60_000, message: `the admission server to listen\n${stderr}` })
        .toBeGreaterThan(0);
      await kube.create(
        MWC_PATH,
        renderConfiguration(configuration, own, `https://127.0.0.1:${await port()}`, run),
      );
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
      expect(stdout).toContain('"msg":"sidecar injected"');
    } finally {
      child.kill("SIGTERM");
      await kube.delete(`${MWC_PATH}/${configuration}`).catch(() => undefined);
    }
    expect(await exited).toBe(0);
    expect(stdout).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./); // no token in the logs
  });
});
