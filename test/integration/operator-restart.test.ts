import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { type ControlPlane, startControlPlane } from "../../src/dev/controlplane.ts";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { type ApiServerRestarter, apiServerRestarter } from "./kube-support.ts";
import { LogCapture, onEmulator, startTestEmulator, startTestManager } from "./operator-fixture.ts";
import { condition, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

/**
 * A running manager survives a kube-apiserver restart (on a private control plane, so other test files
 * are not disturbed): it keeps its lease or wins it back, and changes made around the restart are
 * reconciled.
 */
let cp: ControlPlane;
let restarter: ApiServerRestarter;
let admin: KubeClient;
let emu: RunningEmulator;
let manager: RunningManager | undefined;
const NS = "restart";

beforeAll(async () => {
  cp = await startControlPlane({ apiserverArgs: { "shutdown-watch-termination-grace-period": "2s" } });
  restarter = apiServerRestarter(cp);
  admin = createKubeClient(cp.kubeConfig, { requestTimeoutMs: 5_000 });
  await ensureCrd(cp.kubeConfig);
  await createNamespace(cp.kubeConfig, NS);
  emu = await startTestEmulator(cp);
});

afterAll(async () => {
  await manager?.stop();
  await emu?.close();
  await admin?.close();
  await restarter?.stop();
  await cp?.stop();
});

describe("the operator across an API server restart", () => {
  it("reconciles what changed before and after the restart", async () => {
    manager = await startTestManager(cp, emu, NS, new LogCapture(), { verify: false });
    const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(NS, name));
    const ready = (name: string, sa: string) =>
      expect
        .poll(
          async () => {
            const identity = await read(name);
            return (
              condition(identity, "Ready")?.status === "True" &&
              identity?.status?.serviceAccount === sa &&
              identity.status.observedGeneration === identity.metadata.generation
            );
          },
          { message: `${name} Ready with ServiceAccount ${sa}`, timeout: 90_000 },
        )
        .toBe(true);
    // The identities' blueprint (named after the namespace), on a managed identity: Ready without Entra.
    await createBlueprint(admin, NS, { ...onEmulator(emu), credential: { managedIdentity: {} } });
    await createIdentity(admin, NS, "before");
    await ready("before", "before");

    await restarter.restart();
    // Right after a restart the API server answers 503 for custom resources until their paths are installed.
    await expect
      .poll(() => createIdentity(admin, NS, "after").then(() => true), {
        message: "the AgentIdentity API to serve again",
        timeout: 30_000,
      })
      .toBe(true);
    // A spec change after the restart (serviceAccountName is immutable): observed at its new generation.
    await admin.patch(identityPath(NS, "before"), "merge", { spec: { sidecar: { logLevel: "Debug" } } });
    await ready("after", "after");
    await ready("before", "before");
    await expect
      .poll(() => manager?.isLeader(), { message: "a leader after the restart", timeout: 30_000 })
      .toBe(true);
    expect(manager.hasSynced()).toBe(true);
  });
});
