import { randomBytes } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { beforeEach, inject } from "vitest";
import { kubeConfigFor } from "../../src/dev/controlplane.ts";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";

/**
 * Test-side access to the ONE control plane that `controlplane-global-setup.ts` starts for the vitest
 * `integration` project (test/integration/**, test/e2e/**). Unit-only runs never start it.
 *
 *   const cp = useControlPlane();              // in a test file, at top level
 *   it("...", async () => { cp.kubeConfig; cp.namespace; ... });   // a fresh namespace per test
 *
 * Namespaces are not deleted afterwards: no namespace controller runs, so a deleted namespace would stay
 * Terminating anyway, and leaving it lets a failed test be inspected with the run's kubeconfig.
 */

/** What the global setup hands to test workers (must be structured-cloneable). */
export interface ControlPlaneConnection {
  server: string;
  kubeconfigPath: string;
  issuerUrl: string;
  caPem: string;
  adminCertPem: string;
  adminKeyPem: string;
  /** etcd and kube-apiserver log files, to read when a test suspects the control plane. */
  logs: { etcd: string; kubeApiserver: string };
}

declare module "vitest" {
  export interface ProvidedContext {
    agentidControlPlane: ControlPlaneConnection | undefined;
  }
}

export interface ConnectedControlPlane extends ControlPlaneConnection {
  /** Cluster-admin client for the shared control plane. */
  kubeConfig: KubeConfig;
}

/** The shared control plane of this run; fails with a message naming what is missing. */
export function connectControlPlane(): ConnectedControlPlane {
  const info = inject("agentidControlPlane");
  if (!info) {
    throw new Error(
      "no control plane was started for this test file: put it under test/integration/ (the vitest " +
        "'integration' project, whose globalSetup test/support/controlplane-global-setup.ts starts kube-apiserver and etcd)",
    );
  }
  return { ...info, kubeConfig: kubeConfigFor(info.server, info.caPem, info.adminCertPem, info.adminKeyPem) };
}

export interface ControlPlaneFixture extends ConnectedControlPlane {
  /** The namespace created for the current test. */
  readonly namespace: string;
}

export interface UseControlPlaneOptions {
  /** Labels of every per-test namespace, e.g. pod-security.kubernetes.io/enforce. */
  namespaceLabels?: Record<string, string>;
  /** Start of each namespace name (default "test"). */
  namespacePrefix?: string;
}

/** Connects to the shared control plane and creates a fresh namespace before each test of the file. */
export function useControlPlane(options: UseControlPlaneOptions = {}): ControlPlaneFixture {
  const connected = connectControlPlane();
  let current: string | undefined;
  beforeEach(async () => {
    current = `${options.namespacePrefix ?? "test"}-${randomBytes(4).toString("hex")}`;
    await createNamespace(connected.kubeConfig, current, options.namespaceLabels ?? {});
  });
  return {
    ...connected,
    get namespace(): string {
      if (current === undefined) throw new Error("the per-test namespace exists only inside a test");
      return current;
    },
  };
}
