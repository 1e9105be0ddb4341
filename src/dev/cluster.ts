import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { KubeConfig } from "@kubernetes/client-node";
import { createKubeClient, isApiError } from "../kube/client.ts";
import { type ClusterBinaries, ensureClusterBinaries } from "./cluster-binaries.ts";
import {
  CLUSTER_NETWORK,
  CLUSTER_PORTS,
  cgroupRootFor,
  clusterApiserverArgs,
  clusterPaths,
  cniConfig,
  componentKubeconfig,
  containerdConfig,
  kubeControllerManagerArgs,
  kubeletArgs,
  kubeletConfig,
  kubeSchedulerArgs,
  NODE_NAME,
  netnsNameFor,
  PAUSE_IMAGE,
} from "./cluster-config.ts";
import { buildPauseImage } from "./cluster-images.ts";
import { CNI_BIN_DIR, ensureClusterPackages } from "./cluster-packages.ts";
import { exposeOnLoopback } from "./cluster-relay.ts";
import {
  type ClusterRecord,
  createCgroups,
  createNetns,
  inNetns,
  originalSysctls,
  otherLiveClusters,
  reapStaleClusters,
  teardown,
  writeRecord,
} from "./cluster-system.ts";
import { type ControlPlane, startControlPlane } from "./controlplane.ts";
import { formatElapsed } from "./controlplane-binaries.ts";
import { ensureControlPlaneBinaries } from "./controlplane-build.ts";
import {
  type ManagedProcess,
  onProcessExit,
  reportUnexpectedExits,
  startProcess,
  tailFile,
  waitWhileRunning,
} from "./controlplane-process.ts";

const execFileAsync = promisify(execFile);

/** Temporary directories of running clusters start with this; leftovers of killed runs are reaped by it. */
export const CLUSTER_DIR_PREFIX = "agentid-cluster-";

export interface StartClusterOptions {
  env?: NodeJS.ProcessEnv;
  /** How long everything may take to come up once the binaries exist (default 180 s). */
  startTimeoutMs?: number;
  /** Parent of the cluster's directory (default: the OS temp dir). */
  tmpRoot?: string;
  progress?: (line: string) => void;
  /** More ports of the namespace's loopback that `expose` may relay to this host (e.g. an emulator's), by name. */
  relayPorts?: Record<string, number>;
}

export interface Cluster {
  /** Cluster-admin client, reaching kube-apiserver through a relay on this host's loopback. */
  kubeConfig: KubeConfig;
  kubeconfigPath: string;
  controlPlane: ControlPlane;
  /** The network namespace everything runs in; pods are on its bridge in 198.51.100.0/24. */
  netns: string;
  nodeName: string;
  /** The node's address inside the namespace, where pods reach kube-apiserver and processes started with `spawn`. */
  nodeIp: string;
  dir: string;
  containerdSocket: string;
  logs: Record<string, string>;
  /** Start-up phases in ms, for the report. */
  timings: Record<string, number>;
  /** Imports an image archive (docker-archive or OCI tar) into the node's containerd. */
  importImage(archive: string): Promise<void>;
  /** Starts a process inside the cluster's network namespace (the emulator, a test server); stopped with the cluster. */
  spawn(name: string, command: string, args: string[]): ManagedProcess;
  /** Exposes a port of the namespace's loopback on this host's loopback; returns the port here. */
  expose(port: number): Promise<number>;
  stop(): Promise<void>;
}

export class ClusterStartError extends Error {
  override name = "ClusterStartError";
}

/** Polls a probe until it answers; an exited process fails it at once, with its log's last lines. */
const waitFor = waitWhileRunning(
  async (message, dead) =>
    new ClusterStartError(
      dead ? `${message}; last lines of ${dead.logPath}:\n${await tailFile(dead.logPath, 30)}` : message,
    ),
  250,
);

/**
 * Everything a cluster needs before it can start: Debian packages (installed as root on Debian), the control
 * plane's and the node's binaries (built or found in the cache), the pause image. Idempotent; `.ci/run` calls it
 * (through `npm run cluster -- --prepare`) so the build shows as its own step.
 */
export async function prepareCluster(options: { env?: NodeJS.ProcessEnv; progress: (line: string) => void }) {
  const env = options.env ?? process.env;
  const { progress } = options;
  await ensureClusterPackages(progress);
  const cpBinaries = await ensureControlPlaneBinaries({ env, progress });
  const binaries: ClusterBinaries = await ensureClusterBinaries({ env, progress });
  const pauseArchive = await buildPauseImage(binaries.pause, progress);
  return { cpBinaries, binaries, pauseArchive };
}

const RELAY_SCRIPT = fileURLToPath(
  new URL(`./cluster-relay${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url),
);

/**
 * Starts a single-node cluster inside a network namespace of its own: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, containerd and a kubelet. Needs root on Linux; installs missing
 * Debian packages. Everything it changes on the machine is undone by `stop()`, by a process-exit hook, or by the
 * next start after a killed run.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`[cluster] ${line}\n`));
  const timings: Record<string, number> = {};
  let mark = Date.now();
  const phase = (name: string) => {
    const now = Date.now();
    timings[name] = now - mark;
    mark = now;
  };

  const { cpBinaries, binaries, pauseArchive } = await prepareCluster({ env, progress });
  phase("binaries");

  const tmpRoot = options.tmpRoot ?? tmpdir();
  for (const dir of reapStaleClusters(tmpRoot, CLUSTER_DIR_PREFIX)) {
    progress(`removed a cluster left behind by a killed process: ${dir}`);
  }
  const started = Date.now();
  const deadline = started + (options.startTimeoutMs ?? 180_000);
  const dir = await mkdtemp(join(tmpRoot, CLUSTER_DIR_PREFIX));
  const id = dir
    .slice(-6)
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "x");
  const record: ClusterRecord = {
    pid: process.pid,
    netns: netnsNameFor(id),
    cgroupRoot: cgroupRootFor(id),
    sysctls: originalSysctls(dir),
    varLibKubeletExisted:
      existsSync("/var/lib/kubelet") && otherLiveClusters(dir).every((r) => r.varLibKubeletExisted),
  };
  // Recorded before anything is made, so that whatever happens next can be undone.
  writeRecord(dir, record);
  const paths = clusterPaths(dir);
  const processes: ManagedProcess[] = [];
  const closers: (() => Promise<void>)[] = [];
  let controlPlane: ControlPlane | undefined;
  let stopped = false;
  const unregister = onProcessExit(() => teardown(dir, record));
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // kubelet first, so it does not restart what is being removed; then the runtime; the control plane last.
    for (const p of [...processes].reverse()) await p.stop(5_000);
    await controlPlane?.stop();
    for (const close of closers) await close();
    teardown(dir, record);
    unregister();
  };

  try {
    await Promise.all(
      [
        paths.logs,
        paths.relay,
        paths.kubeconfigs,
        paths.cniConfDir,
        paths.cniIpamDir,
        paths.podLogsDir,
        join(dir, "containerd"),
      ].map((d) => mkdir(d, { recursive: true })),
    );
    await createNetns(record.netns);
    const launch = (name: string, command: string, args: string[]) => {
      const [cmd, argv] = inNetns(record.netns, command, args);
      const p = startProcess(name, cmd, argv, join(paths.logs, `${name}.log`));
      processes.push(p);
      return p;
    };

    // The relay: Unix sockets in the cluster's directory, connected to ports of the namespace's loopback.
    const routes: Record<string, number> = {
      ...options.relayPorts,
      apiserver: CLUSTER_PORTS.apiserver,
      etcd: CLUSTER_PORTS.etcd,
    };
    const relay = launch("relay", process.execPath, [
      RELAY_SCRIPT,
      ...Object.entries(routes).map(([name, port]) => `${join(paths.relay, name)}.sock=${port}`),
    ]);
    await waitFor("the relay", deadline, [relay], async () =>
      (await readFile(relay.logPath, "utf8")).includes("ready") ? true : undefined,
    );
    const expose = async (port: number) => {
      const name = Object.entries(routes).find(([, p]) => p === port)?.[0];
      if (!name) throw new Error(`port ${port} has no relay`);
      const exposed = await exposeOnLoopback(`${join(paths.relay, name)}.sock`);
      closers.push(exposed.close);
      return exposed.port;
    };
    phase("namespace");

    controlPlane = await startControlPlane({
      binaries: cpBinaries,
      env,
      tmpRoot: dir,
      progress,
      apiserverArgs: clusterApiserverArgs(),
      placement: {
        command: (binary, args) => inNetns(record.netns, binary, args),
        ports: {
          etcd: CLUSTER_PORTS.etcd,
          etcdPeer: CLUSTER_PORTS.etcdPeer,
          apiserver: CLUSTER_PORTS.apiserver,
        },
        expose,
        bindAddress: "0.0.0.0",
        pki: {
          servingIpAddresses: [CLUSTER_NETWORK.gateway, CLUSTER_NETWORK.kubernetesServiceIp],
          servingDnsNames: [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
          ],
          clients: {
            kubelet: { commonName: `system:node:${NODE_NAME}`, organizations: ["system:nodes"] },
            controllerManager: { commonName: "system:kube-controller-manager" },
            scheduler: { commonName: "system:kube-scheduler" },
          },
        },
      },
    });
    phase("controlPlane");
    const cp = controlPlane;
    const inside = `https://127.0.0.1:${CLUSTER_PORTS.apiserver}`;
    const kubeconfigFor = async (name: string, user: string) => {
      const cert = cp.pki.clients[name];
      if (!cert) throw new Error(`no client certificate for ${name}`);
      const path = join(paths.kubeconfigs, `${name}.kubeconfig`);
      await writeFile(path, componentKubeconfig({ server: inside, caPem: cp.caPem, ...cert, user }), {
        mode: 0o600,
      });
      return path;
    };

    await writeFile(paths.containerdConfig, containerdConfig({ paths, cniBinDir: CNI_BIN_DIR }));
    await writeFile(join(paths.cniConfDir, "10-agentid.conflist"), cniConfig(paths));
    const containerd = launch("containerd", "containerd", ["--config", paths.containerdConfig]);
    const ctr = (...args: string[]) => execFileAsync("ctr", ["--address", paths.containerdSocket, ...args]);
    await waitFor("containerd", deadline, [containerd], async () =>
      (await ctr("version")) ? true : undefined,
    );
    await ctr("-n", "k8s.io", "images", "import", pauseArchive);
    phase("containerd");

    const controllerManager = launch(
      "kube-controller-manager",
      binaries.kubeControllerManager,
      kubeControllerManagerArgs({
        kubeconfig: await kubeconfigFor("controllerManager", "system:kube-controller-manager"),
        caFile: cp.pkiFiles.caFile,
        serviceAccountKeyFile: cp.pkiFiles.serviceAccountSigningKeyFile,
      }),
    );
    const scheduler = launch(
      "kube-scheduler",
      binaries.kubeScheduler,
      kubeSchedulerArgs(await kubeconfigFor("scheduler", "system:kube-scheduler")),
    );
    createCgroups(record.cgroupRoot);
    await writeFile(
      paths.kubeletConfig,
      kubeletConfig({ paths, caFile: cp.pkiFiles.caFile, cgroupRoot: record.cgroupRoot }),
    );
    const kubelet = launch(
      "kubelet",
      binaries.kubelet,
      kubeletArgs({ paths, kubeconfig: await kubeconfigFor("kubelet", `system:node:${NODE_NAME}`) }),
    );

    const client = createKubeClient(cp.kubeConfig);
    try {
      await waitFor("node Ready", deadline, [containerd, controllerManager, scheduler, kubelet], async () => {
        const node = await client.get<{
          spec?: { taints?: { key: string }[] };
          status?: { conditions?: { type: string; status: string }[] };
        }>(`/api/v1/nodes/${NODE_NAME}`);
        const ready = node.status?.conditions?.find((c) => c.type === "Ready");
        // The node lifecycle controller removes the not-ready taint a moment after Ready.
        const taints = (node.spec?.taints ?? []).map((t) => t.key);
        if (ready?.status === "True" && taints.length === 0) return true;
        throw new Error(`Ready=${ready?.status ?? "unknown"}, taints: ${taints.join(", ") || "none"}`);
      });
      phase("nodeReady");
      // Pods of the default namespace need its ServiceAccount, made by the controller-manager.
      await waitFor("the default ServiceAccount", deadline, [controllerManager], async () => {
        try {
          await client.get("/api/v1/namespaces/default/serviceaccounts/default");
          return true;
        } catch (error) {
          if (isApiError(error, 404)) return undefined;
          throw error;
        }
      });
      phase("serviceAccount");
    } finally {
      await client.close();
    }

    timings.total = Date.now() - started;
    progress(
      `cluster ready in ${formatElapsed(timings.total)} (node ${NODE_NAME} at ${CLUSTER_NETWORK.gateway} in network namespace ${record.netns}; ` +
        `kube-apiserver here at ${cp.server}; logs in ${paths.logs})`,
    );
    reportUnexpectedExits(processes, progress, () => stopped);
    return {
      kubeConfig: cp.kubeConfig,
      kubeconfigPath: cp.kubeconfigPath,
      controlPlane: cp,
      netns: record.netns,
      nodeName: NODE_NAME,
      nodeIp: CLUSTER_NETWORK.gateway,
      dir,
      containerdSocket: paths.containerdSocket,
      logs: Object.fromEntries([...processes.map((p) => [p.name, p.logPath]), ...Object.entries(cp.logs)]),
      timings,
      async importImage(archive: string) {
        await ctr("-n", "k8s.io", "images", "import", archive);
      },
      spawn: (name, command, args) => launch(name, command, args),
      expose,
      stop,
    };
  } catch (error) {
    const logs = await Promise.all(
      processes.map(async (p) => `--- ${p.name} (${p.logPath}) ---\n${await tailFile(p.logPath, 20)}`),
    );
    // The logs outlive the failed cluster, for whoever reads the error.
    const kept = join(tmpRoot, "agentid-cluster-logs-last");
    await rm(kept, { recursive: true, force: true });
    await cp(paths.logs, kept, { recursive: true }).catch(() => undefined);
    await stop().catch(() => undefined);
    logs.push(`(all logs kept in ${kept})`);
    throw new ClusterStartError(
      `could not start the cluster: ${(error as Error).message}\n${logs.join("\n")}`,
      {
        cause: error,
      },
    );
  }
}

export { PAUSE_IMAGE };
