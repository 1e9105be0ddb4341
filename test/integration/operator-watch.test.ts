import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { kubeConfigFor } from "../../src/dev/controlplane.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { startTcpProxy, type TcpProxy } from "./kube-tcp-proxy.ts";
import { onEmulator } from "./operator-fixture.ts";
import { useOperatorHarness } from "./operator-harness.ts";
import { condition, createBlueprint, createIdentity } from "./operator-support.ts";

/** The manager reaches the API server through a TCP relay that drops every connection on demand. */
const op = useOperatorHarness({ namespacePrefix: "opwatch" });
const { cp, admin, read } = op;
let proxy: TcpProxy;

beforeAll(async () => {
  const server = new URL(cp.server);
  proxy = await startTcpProxy(server.hostname, Number(server.port));
});
afterAll(async () => {
  await proxy?.close();
});

describe("the operator's watches", () => {
  it("lose no AgentIdentity change when every connection to the API server is dropped", async () => {
    const viaProxy = kubeConfigFor(
      `https://127.0.0.1:${proxy.port}`,
      cp.caPem,
      cp.adminCertPem,
      cp.adminKeyPem,
    );
    const manager = await op.manager({ verify: false }, { kubeConfig: viaProxy });
    // The identities' blueprint (named after the namespace), on a managed identity: Ready without Entra.
    await createBlueprint(admin, cp.namespace, {
      ...onEmulator(op.emu),
      credential: { managedIdentity: {} },
    });
    await createIdentity(admin, cp.namespace, "early");
    const ready = (name: string) =>
      expect
        .poll(async () => condition(await read(name), "Ready")?.status, {
          message: `${name} Ready`,
          timeout: 60_000,
        })
        .toBe("True");
    await ready("early");

    // Changes made while the manager's watches are cut must still arrive (by reconnect or relist).
    expect(proxy.dropAll()).toBeGreaterThan(0);
    const acceptedAfterDrop = proxy.accepted();
    await createIdentity(admin, cp.namespace, "during-drop");
    // A spec change (serviceAccountName is immutable, so another field): seen at its new generation.
    const changed = await admin.patch<AgentIdentity>(identityPath(cp.namespace, "early"), "merge", {
      spec: { sidecar: { logLevel: "Debug" } },
    });
    // Cut again once the manager has reconnected, so that it must recover a second time.
    await expect.poll(() => proxy.accepted(), { timeout: 30_000 }).toBeGreaterThan(acceptedAfterDrop);
    await expect.poll(() => proxy.open(), { timeout: 30_000 }).toBeGreaterThan(0);
    expect(proxy.dropAll()).toBeGreaterThan(0);
    await ready("during-drop");
    let renamed: AgentIdentity | undefined;
    await expect
      .poll(
        async () => {
          renamed = await read("early");
          return (
            renamed?.metadata.generation === changed.metadata.generation &&
            renamed?.status?.observedGeneration === changed.metadata.generation
          );
        },
        { message: "early's change to be observed", timeout: 60_000 },
      )
      .toBe(true);
    expect(condition(renamed, "Ready")?.status).toBe("True");
    const restarts = await (await fetch(`${manager.metricsUrl}/metrics`)).text();
    expect(restarts).toMatch(
      /agentid_watch_restarts_total\{resource="agentidentities",reason="[a-z]+"\} [1-9]/,
    );
  });
});
