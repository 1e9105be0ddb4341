import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import type { TestProject } from "vitest/node";
import { type Cluster, startCluster } from "../../src/dev/cluster.ts";
import { CLUSTER_NETWORK } from "../../src/dev/cluster-config.ts";
import { buildImageTrustingCa, buildProjectImages } from "../../src/dev/cluster-images.ts";
import { machineFacts, missingRequirements } from "../../src/dev/cluster-packages.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { EMULATOR_CA_CONFIGMAP } from "./support/pods.ts";
import type { E2eTarget } from "./support/target.ts";

/**
 * vitest globalSetup of the `e2e` project: builds the images from the Dockerfile, starts the local cluster,
 * imports the images and runs the Entra emulator inside the cluster's network namespace. Where the cluster
 * cannot run (not Linux, not root) it prints one line naming what is missing and the scenarios are skipped.
 */

const CLI = fileURLToPath(new URL("../../bin/agentid.js", import.meta.url));
const EMULATOR_PORT = 9443;
export const TENANT = "7f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
export const BLUEPRINT = "0b6f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
export const AGENT = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
/** Asked for only after the kubelet rotated the projected token (token-rotation.test.ts). */
export const SECOND_AGENT = "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b";
export const AGENT_NAMESPACE = "e2e-agents";
export const AGENT_SERVICE_ACCOUNT = "research-agent";
export const WEBHOOK_SERVICE_ACCOUNT = "webhook-agent";

const log = (line: string) => process.stderr.write(`[e2e] ${line}\n`);

/** The emulator's directory: one tenant, a blueprint whose federated credential names the cluster's issuer. */
export function emulatorDirectory(issuer: string): string {
  return JSON.stringify({
    tenants: [
      {
        id: TENANT,
        displayName: "agentid e2e",
        domains: ["e2e.onmicrosoft.com"],
        applications: [
          {
            appId: BLUEPRINT,
            displayName: "e2e blueprint",
            kind: "agentIdentityBlueprint",
            identifierUris: [`api://${BLUEPRINT}`],
            federatedIdentityCredentials: [
              {
                name: "e2e-agents",
                issuer,
                subject: `system:serviceaccount:${AGENT_NAMESPACE}:${AGENT_SERVICE_ACCOUNT}`,
                audiences: ["api://AzureADTokenExchange"],
              },
              // The ServiceAccount the operator creates for the webhook scenario's AgentIdentity.
              {
                name: "e2e-webhook-agent",
                issuer,
                subject: `system:serviceaccount:${AGENT_NAMESPACE}:${WEBHOOK_SERVICE_ACCOUNT}`,
                audiences: ["api://AzureADTokenExchange"],
              },
            ],
          },
        ],
        agentIdentities: [
          { appId: AGENT, displayName: "e2e agent", blueprintAppId: BLUEPRINT },
          { appId: SECOND_AGENT, displayName: "e2e second agent", blueprintAppId: BLUEPRINT },
        ],
        resources: [
          {
            appId: "00000003-0000-0000-c000-000000000000",
            displayName: "Microsoft Graph",
            identifierUris: ["https://graph.microsoft.com"],
            audience: "https://graph.microsoft.com",
            appRoles: ["User.Read.All"],
          },
        ],
        grants: [
          {
            type: "application",
            clientAppId: AGENT,
            resource: "https://graph.microsoft.com",
            roles: ["User.Read.All"],
          },
        ],
      },
    ],
  });
}

async function startEmulator(cluster: Cluster): Promise<{ caPem: string }> {
  const dir = join(cluster.dir, "emulator");
  await mkdir(dir, { recursive: true });
  const directory = join(dir, "directory.json");
  await writeFile(directory, emulatorDirectory(cluster.controlPlane.issuerUrl));
  const emulator = cluster.spawn("emulator", process.execPath, [
    CLI,
    "emulator",
    // Inside the namespace: its loopback and the pods' bridge, nothing else.
    "--host",
    "0.0.0.0",
    "--public-host",
    CLUSTER_NETWORK.gateway,
    "--port",
    String(EMULATOR_PORT),
    "--directory",
    directory,
    "--state-dir",
    join(dir, "state"),
    // The federated credential's issuer is the cluster's kube-apiserver, whose CA is the cluster's.
    "--trust-ca",
    cluster.controlPlane.pkiFiles.caFile,
    "--log-level",
    "warn",
  ]);
  const port = await cluster.expose(EMULATOR_PORT);
  const deadline = Date.now() + 60_000;
  let last = "";
  while (Date.now() < deadline) {
    if (emulator.hasExited()) throw new Error(`the emulator exited; see ${emulator.logPath}`);
    try {
      const caPem = await readFile(join(dir, "state", "ca.pem"), "utf8");
      // Only a readiness check through the relay: the certificate names 198.51.100.1, not 127.0.0.1.
      const dispatcher = new Agent({ connect: { ca: caPem, checkServerIdentity: () => undefined } });
      const res = await request(`https://127.0.0.1:${port}/${TENANT}/v2.0/.well-known/openid-configuration`, {
        dispatcher,
      });
      await res.body.text();
      if (res.statusCode === 200) {
        // Each projected token may be used once per exchange, as a strict Entra would: a sidecar that kept
        // sending the same kubelet token after a rotation is refused (token-rotation.test.ts relies on it).
        const settings = await request(`https://127.0.0.1:${port}/_emulator/settings`, {
          dispatcher,
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ rejectReplayedAssertions: true }),
        });
        await settings.body.text();
        await dispatcher.close();
        if (settings.statusCode !== 200) throw new Error(`emulator settings: ${settings.statusCode}`);
        return { caPem };
      }
      await dispatcher.close();
      last = String(res.statusCode);
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`the emulator did not answer within 60 s (last: ${last})`);
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const state = missingRequirements(machineFacts());
  if (!state.ok && state.reason !== "packages") {
    // The one line `npm test` shows for this project.
    console.log(`e2e: skipped: ${state.message}`);
    project.provide("agentidE2e", { unavailable: state.message });
    return undefined;
  }
  const started = Date.now();
  const images = await buildProjectImages(["sidecar", "manager"], log);
  const cluster = await startCluster({ relayPorts: { emulator: EMULATOR_PORT }, progress: log });
  try {
    for (const image of images) await cluster.importImage(image.archive);
    const { caPem } = await startEmulator(cluster);
    const sidecarImage = images.find((i) => i.target === "sidecar")?.name ?? "";
    const trusting = await buildImageTrustingCa(sidecarImage, caPem, log);
    await cluster.importImage(trusting.archive);
    const client = createKubeClient(cluster.kubeConfig);
    try {
      await client.create("/api/v1/namespaces", {
        apiVersion: "v1",
        kind: "Namespace",
        // Every agent pod, injected or written by hand, must pass Pod Security `restricted` on the node.
        metadata: { name: AGENT_NAMESPACE, labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
      });
      await client.create(`/api/v1/namespaces/${AGENT_NAMESPACE}/serviceaccounts`, {
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name: AGENT_SERVICE_ACCOUNT },
      });
      await client.create(`/api/v1/namespaces/${AGENT_NAMESPACE}/configmaps`, {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: EMULATOR_CA_CONFIGMAP },
        data: { "ca.pem": caPem },
      });
    } finally {
      await client.close();
    }
    const byTarget = Object.fromEntries(images.map((i) => [i.target, i.name]));
    const target: E2eTarget = {
      cluster: "local",
      kubeconfigPath: cluster.kubeconfigPath,
      images: {
        sidecar: byTarget.sidecar ?? "",
        manager: byTarget.manager ?? "",
        sidecarTrustingEmulator: trusting.name,
      },
      emulator: {
        instance: `https://${CLUSTER_NETWORK.gateway}:${EMULATOR_PORT}/`,
        caPem,
        tenantId: TENANT,
        blueprintAppId: BLUEPRINT,
        agentAppId: AGENT,
        secondAgentAppId: SECOND_AGENT,
      },
      agentNamespace: AGENT_NAMESPACE,
      agentServiceAccount: AGENT_SERVICE_ACCOUNT,
    };
    log(
      `ready in ${((Date.now() - started) / 1000).toFixed(1)} s: cluster start-up phases (ms) ${JSON.stringify(cluster.timings)}; ` +
        images.map((i) => `${i.name} ${(i.sizeBytes / 1e6).toFixed(1)} MB`).join(", "),
    );
    project.provide("agentidE2e", { target });
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return () => cluster.stop();
}
