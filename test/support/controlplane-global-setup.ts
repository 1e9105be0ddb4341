import type { TestProject } from "vitest/node";
import { startControlPlane } from "../../src/dev/controlplane.ts";
import type { ControlPlaneConnection } from "./controlplane.ts";

/**
 * vitest globalSetup of the `integration` project: starts one kube-apiserver + etcd for the whole run
 * (building or finding the binaries first) and hands its connection to the test workers. vitest runs a
 * project's globalSetup only when that project has test files in the run, so unit-only runs skip it.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const controlPlane = await startControlPlane();
  const connection: ControlPlaneConnection = {
    server: controlPlane.server,
    kubeconfigPath: controlPlane.kubeconfigPath,
    issuerUrl: controlPlane.issuerUrl,
    caPem: controlPlane.caPem,
    adminCertPem: controlPlane.adminCertPem,
    adminKeyPem: controlPlane.adminKeyPem,
    logs: controlPlane.logs,
  };
  project.provide("agentidControlPlane", connection);
  return () => controlPlane.stop();
}
