import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { expect } from "vitest";
import type { ControlPlane } from "../../src/dev/controlplane.ts";
import {
  isAlive,
  type ManagedProcess,
  onProcessExit,
  startProcess,
} from "../../src/dev/controlplane-process.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { createLogger, type Logger } from "../../src/lib/log.ts";
import { connectControlPlane } from "../support/controlplane.ts";

/** Shared bits of the kube toolkit's integration tests. */

export interface KubeTestEnv {
  kubeConfig: KubeConfig;
  close(): Promise<void>;
}

/** The run's shared control plane (test/support/controlplane.ts); fails naming what is missing. */
export async function startKubeEnv(): Promise<KubeTestEnv> {
  const { kubeConfig } = connectControlPlane();
  return { kubeConfig, close: async () => {} };
}

/** A copy of the kubeconfig whose server is 127.0.0.1:<port> (a TCP proxy in front of the API server). */
export function viaPort(kubeConfig: KubeConfig, port: number): KubeConfig {
  const cluster = kubeConfig.getCurrentCluster();
  const user = kubeConfig.getCurrentUser();
  if (!cluster || !user) throw new Error("kubeconfig without a current cluster and user");
  const server = new URL(cluster.server);
  server.port = String(port);
  const copy = new KubeConfig();
  copy.loadFromClusterAndUser({ ...cluster, server: server.toString().replace(/\/$/, "") }, user);
  return copy;
}

export function apiServerAddress(kubeConfig: KubeConfig): { host: string; port: number } {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("kubeconfig without a current cluster");
  const url = new URL(cluster.server);
  return { host: url.hostname, port: Number(url.port || 443) };
}

export function testLogger(name: string): Logger {
  return createLogger({ name, level: process.env.AGENTID_TEST_LOG === "debug" ? "debug" : "silent" });
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

export async function createNamespace(client: KubeClient, prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await client.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  return name;
}

export { createKubeClient };

export interface ConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
  };
  data?: Record<string, string>;
}

export function configMap(namespace: string, name: string, data: Record<string, string>): ConfigMap {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data };
}

/**
 * Stops and starts the kube-apiserver of a control plane this test file started itself, on the same
 * etcd, port and flags (read from /proc/<pid>/cmdline). The harness has no restart of its own yet.
 */
export interface ApiServerRestarter {
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /** Stops the kube-apiserver this helper started, if any (call before the control plane's stop()). */
  stop(): Promise<void>;
}

export function apiServerRestarter(cp: ControlPlane): ApiServerRestarter {
  const originalPid = cp.pids.kubeApiserver;
  const argv = readFileSync(`/proc/${originalPid}/cmdline`, "utf8").split("\0").filter(Boolean);
  const [binary, ...args] = argv;
  if (!binary) throw new Error(`cannot read the command line of kube-apiserver (pid ${originalPid})`);
  let mine: ManagedProcess | undefined;
  // A test run that dies must not leave the kube-apiserver we started behind.
  const unregister = onProcessExit(() => mine?.killNow());
  const client = createKubeClient(cp.kubeConfig, { requestTimeoutMs: 2_000 });
  return {
    async restart(whileDown) {
      if (mine) {
        await mine.stop();
      } else {
        process.kill(originalPid, "SIGTERM");
        await expect
          .poll(() => isAlive(originalPid), { message: "the old kube-apiserver to exit", timeout: 60_000 })
          .toBe(false);
      }
      await whileDown?.();
      mine = startProcess("kube-apiserver", binary, args, cp.logs.kubeApiserver);
      const started = mine;
      // Stops early when the process exits: "exited" matches too, and is turned into an error below.
      await expect
        .poll(
          async () => {
            if (started.hasExited()) return "exited";
            // A namespace read needs etcd and the apiserver's storage: the same bar as readiness.
            return client.request("GET", "/api/v1/namespaces/default").then(
              () => "ready",
              () => "not ready",
            );
          },
          { message: "the restarted kube-apiserver to be ready", timeout: 120_000 },
        )
        .toMatch(/^(ready|exited)$/);
      if (started.hasExited())
        throw new Error(`restarted kube-apiserver exited; see ${cp.logs.kubeApiserver}`);
    },
    async stop() {
      await mine?.stop();
      unregister();
      await client.close();
    },
  };
}
