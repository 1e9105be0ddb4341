import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { spawnManager } from "../support/child.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { createNamespace } from "./kube-support.ts";
import { condition, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

/** `agentid manager` as a real process: it reconciles, and on SIGTERM releases its Lease and exits 0. */
const cp = useControlPlane({ namespacePrefix: "opproc" });
const kube = createKubeClient(cp.kubeConfig);
beforeAll(() => ensureCrd(cp.kubeConfig));
afterAll(() => kube.close());

interface Lease {
  spec?: { holderIdentity?: string };
}

describe("agentid manager process", () => {
  it("reconciles, then releases the Lease and exits 0 on SIGTERM", async () => {
    const ns = cp.namespace;
    // The manager's own namespace (its Lease's) is not the identities': it refuses identities there.
    const own = await createNamespace(kube, "opproc-system");
    const { child, exited, stderr, jsonLines } = spawnManager([
      "--kubeconfig",
      cp.kubeconfigPath,
      "--namespace",
      ns,
      "--lease-namespace",
      own,
      "--no-verify",
      // A port of its own: test files run in parallel on a shared machine, so no fixed port (8080).
      "--metrics-bind-address",
      "127.0.0.1:0",
      "--log-level",
      "info",
    ]);
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${own}/leases/agentid-manager`;
    const holderOf = async () => (await kube.getOptional<Lease>(leasePath))?.spec?.holderIdentity ?? "";
    await expect.poll(holderOf, { message: "the manager to hold the Lease", timeout: 60_000 }).not.toBe("");
    const holder = await holderOf();
    // The identity's blueprint (named after the namespace), on a managed identity: Ready without Entra.
    await createBlueprint(kube, ns, { credential: { managedIdentity: {} } });
    await createIdentity(kube, ns, "proc");
    await expect
      .poll(
        async () =>
          condition(await kube.getOptional<AgentIdentity>(identityPath(ns, "proc")), "Ready")?.status,
        { message: "proc Ready", timeout: 60_000 },
      )
      .toBe("True");

    child.kill("SIGTERM");
    expect(await exited, stderr()).toBe(0);
    const lease = await kube.get<Lease>(leasePath);
    expect(lease.spec?.holderIdentity ?? "").not.toBe(holder);
    // pino JSON lines on stdout, including the hand-over.
    const lines = jsonLines<{ msg?: string }>();
    expect(lines.some((l) => l.msg === "stopping: releasing the lease")).toBe(true);
    expect(stderr()).toBe("");
  });
});
