import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import type { ControlPlane } from "../src/dev/controlplane.ts";
import { type RunningEmulator, startEmulator } from "../src/emulator/index.ts";
import type { KubeClient } from "../src/kube/client.ts";
import { createLogger } from "../src/lib/log.ts";

/**
 * What the operator benchmark reconciles, on the AgentIdentityBlueprint API: most identities use a
 * blueprint on a managed identity (Ready without a call to Entra: the sidecar proves it at run time), and a
 * sample of VERIFIED_SAMPLE identities uses a workload-identity blueprint in Manual mode, each Ready only
 * once the manager has exchanged a real TokenRequest token at the Entra emulator (one blueprint trusts at
 * most 20 federated credentials, so the sample is 20).
 */

export const VERIFIED_SAMPLE = 20;
const TENANT = "6f1d2c3b-0a9e-4d8c-b7a6-112233445566";
const BULK_BLUEPRINT_APP = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const VERIFIED_BLUEPRINT_APP = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
const AGENT = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";
const BLUEPRINTS = "/apis/agentid.io/v1alpha1/agentidentityblueprints";
const BENCH_LABEL = "agentid.io/bench";

export interface BenchFixture {
  emulator: RunningEmulator;
  /** Flags the manager needs to verify at the emulator. */
  managerArgs: string[];
  /** Namespace labels that admit a namespace to the bulk blueprint. */
  namespaceLabels: Record<string, string>;
  /** The body of identity i of a namespace; `verified` ones are the sample on the workload-identity blueprint. */
  identity(namespace: string, i: number, verified: boolean): { name: string; body: object };
  /** Requests to the emulated Entra and Graph so far (the verified sample's token exchanges). */
  emulatorRequests(): Promise<number>;
  close(): Promise<void>;
}

export function sampleName(i: number): string {
  return `verified-${String(i).padStart(2, "0")}`;
}

export async function setUpBlueprints(
  kube: KubeClient,
  cp: ControlPlane,
  sampleNamespace: string,
): Promise<BenchFixture> {
  const emulator = await startEmulator({
    port: 0,
    trustedCaPems: [cp.caPem],
    // On the shared machine the loaded kube-apiserver sometimes took over 5 s to serve its discovery
    // document: the identity then waited 10 minutes (the verification retry) and the run never ended.
    // Below the manager's own 15 s wait for Entra (src/operator/https.ts).
    discoveryTimeoutMs: 12_000,
    logger: createLogger({ name: "emulator", level: "silent" }),
    directory: {
      tenants: [
        {
          id: TENANT,
          applications: [
            {
              appId: VERIFIED_BLUEPRINT_APP,
              kind: "agentIdentityBlueprint",
              displayName: "Bench blueprint (verified)",
              federatedIdentityCredentials: Array.from({ length: VERIFIED_SAMPLE }, (_, i) => ({
                name: `bench-${i}`,
                issuer: cp.issuerUrl,
                subject: `system:serviceaccount:${sampleNamespace}:${sampleName(i)}`,
                audiences: ["api://AzureADTokenExchange"],
              })),
            },
          ],
          agentIdentities: [
            { appId: AGENT, blueprintAppId: VERIFIED_BLUEPRINT_APP, displayName: "Bench agent" },
          ],
        },
      ],
    },
  });
  const trusting = new Agent({ connect: { ca: emulator.caPem } });
  const caDir = mkdtempSync(join(tmpdir(), "agentid-bench-ca-"));
  const caFile = join(caDir, "emulator-ca.pem");
  writeFileSync(caFile, emulator.caPem);
  await kube.create(BLUEPRINTS, {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentityBlueprint",
    metadata: { name: "bench-managed-identity" },
    spec: {
      tenantId: TENANT,
      clientId: BULK_BLUEPRINT_APP,
      credential: { managedIdentity: {} },
      admits: [
        { namespaceSelector: { matchLabels: { [BENCH_LABEL]: "true" } }, agents: { allowed: [AGENT] } },
      ],
    },
  });
  await kube.create(BLUEPRINTS, {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentityBlueprint",
    metadata: { name: "bench-verified" },
    spec: {
      tenantId: TENANT,
      cloud: "Custom",
      authorityHost: `${emulator.url}/`,
      clientId: VERIFIED_BLUEPRINT_APP,
      credential: { workloadIdentity: {} },
      federation: { management: "Manual" },
      admits: [{ namespaces: [sampleNamespace], agents: { allowed: [AGENT] } }],
    },
  });
  return {
    emulator,
    managerArgs: ["--allowed-authority-hosts", emulator.url, "--ca-file", caFile],
    namespaceLabels: { [BENCH_LABEL]: "true" },
    identity(namespace, i, verified) {
      const name = verified ? sampleName(i) : `agent-${String(i).padStart(5, "0")}`;
      return {
        name,
        body: {
          apiVersion: "agentid.io/v1alpha1",
          kind: "AgentIdentity",
          metadata: { name, namespace },
          spec: {
            blueprintRef: { name: verified ? "bench-verified" : "bench-managed-identity" },
            agent: { clientId: AGENT },
            serviceAccountName: name,
          },
        },
      };
    },
    async emulatorRequests() {
      const res = await request(`${emulator.url}/_emulator/counters`, { dispatcher: trusting });
      // Every request to the emulated Entra and Graph (token, metadata, Graph), the admin API excluded.
      return ((await res.body.json()) as { requests: { total: number } }).requests.total;
    },
    async close() {
      await trusting.close();
      await emulator.close();
    },
  };
}
