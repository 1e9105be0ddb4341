import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { kubeConfigFor } from "../../src/dev/controlplane.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { startTcpProxy, type TcpProxy } from "./kube-tcp-proxy.ts";
import { LogCapture, onEmulator, startTestEmulator, startTestManager } from "./operator-fixture.ts";
import { condition, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

/** The manager reaches the API server through a TCP relay that drops every connection on demand. */
const cp = useControlPlane({ namespacePrefix: "opwatch" });
const admin = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
let proxy: TcpProxy;
let manager: RunningManager | undefined;

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(cp);
  const server = new URL(cp.server);
  proxy = await startTcpProxy(server.hostname, Number(server.port));
});
afterEach(async () => {
  await manager?.stop();
  manager = undefined;
});
afterAll(async () => {
  await proxy?.close();
  await emu?.close();
  await admin.close();
});

describe("the operator's watches", () => {
  it("lose no AgentIdentity change when every connection to the API server is dropped", async () => {
    const viaProxy = kubeConfigFor(
      `https://127.0.0.1:${proxy.port}`,
      cp.caPem,
      cp.adminCertPem,
      cp.adminKeyPem,
    );
    manager = await startTestManager({ ...cp, kubeConfig: viaProxy }, emu, cp.namespace, new LogCapture(), {
      verify: false,
    });
    // The identities' blueprint (named after the namespace), on a managed identity: Ready without Entra.
    await createBlueprint(admin, cp.namespace, { ...onEmulator(emu), credential: { managedIdentity: {} } });
    await createIdentity(admin, cp.namespace, "early");
    const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(cp.namespace, name));
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
