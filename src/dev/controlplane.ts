import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { Agent, request } from "undici";
import { etcdArgs, issuerUrlFor, kubeApiserverArgs } from "./controlplane-args.ts";
import { formatElapsed } from "./controlplane-binaries.ts";
import { type ControlPlaneBinaries, ensureControlPlaneBinaries } from "./controlplane-build.ts";
import {
  ADMIN_USER,
  type ControlPlanePki,
  createControlPlanePki,
  type PkiFiles,
  type PkiOptions,
  writePkiFiles,
} from "./controlplane-pki.ts";
import {
  freePorts,
  type ManagedProcess,
  onProcessExit,
  reapStaleControlPlanes,
  reportUnexpectedExits,
  startProcess,
  tailFile,
  waitWhileRunning,
} from "./controlplane-process.ts";

/** Temporary directories of running control planes start with this; stale ones are reaped by it. */
export const CONTROL_PLANE_DIR_PREFIX = "agentid-controlplane-";

/**
 * Where the processes run when not on this host's loopback: the cluster (cluster.ts) runs them inside its
 * own network namespace and reaches them through relays. Absent: free ports on 127.0.0.1, as in integration tests.
 */
export interface ControlPlanePlacement {
  /** The command line that starts `binary` there (e.g. nsenter into the namespace). */
  command(binary: string, args: string[]): [string, string[]];
  /** Ports inside; fixed, because the namespace holds nothing else. */
  ports: { etcd: number; etcdPeer: number; apiserver: number };
  /** Makes a port inside reachable from this process; returns the port on 127.0.0.1 here. */
  expose(port: number): Promise<number>;
  /** Address kube-apiserver binds inside (default 127.0.0.1). */
  bindAddress?: string;
  /** Extra SANs and client certificates (the node's and the controllers' identities). */
  pki?: PkiOptions;
}

export interface StartControlPlaneOptions {
  /** Run somewhere else than this host's loopback (see ControlPlanePlacement). */
  placement?: ControlPlanePlacement;
  /** Binaries to run; found or built with `ensureControlPlaneBinaries` when absent. */
  binaries?: ControlPlaneBinaries;
  env?: NodeJS.ProcessEnv;
  /** Extra or replacing kube-apiserver flags, without the leading dashes; "" removes a default flag. */
  apiserverArgs?: Record<string, string>;
  /** How long etcd plus kube-apiserver may take to become ready (default 120 s: slow 2-core machines). */
  startTimeoutMs?: number;
  /** Keep the temporary directory after stop (default: AGENTID_CONTROLPLANE_KEEP=1). */
  keep?: boolean;
  /** Parent of the temporary directory (default: the OS temp dir). */
  tmpRoot?: string;
  /** Progress lines; stderr by default. */
  progress?: (line: string) => void;
}

export interface ControlPlane {
  /** Cluster-admin client (client certificate in system:masters). */
  kubeConfig: KubeConfig;
  /** The same credentials as a kubeconfig file (kubectl --kubeconfig works with it). */
  kubeconfigPath: string;
  /** https://127.0.0.1:<port>, the service-account issuer; discovery is at <issuer>/.well-known/openid-configuration. */
  issuerUrl: string;
  server: string;
  /** http://127.0.0.1:<port> of etcd (plain HTTP on loopback, no auth: only for tests that inspect storage). */
  etcdUrl: string;
  /** CA that signed the serving certificate (trust it to call the apiserver or its JWKS). */
  caPem: string;
  adminCertPem: string;
  adminKeyPem: string;
  dir: string;
  logs: { etcd: string; kubeApiserver: string };
  pids: { etcd: number; kubeApiserver: number };
  /** Wall-clock start-up, for the progress output. */
  startupMs: number;
  /** The PKI and its files (the cluster writes kubeconfigs for its components from them). */
  pki: ControlPlanePki;
  pkiFiles: PkiFiles;
  /** Port kube-apiserver listens on where it runs (inside the namespace when placed there). */
  apiserverPort: number;
  /** Stops both processes and removes the temporary directory; safe to call twice. */
  stop(): Promise<void>;
}

export class ControlPlaneStartError extends Error {
  override name = "ControlPlaneStartError";
}

/**
 * Polls a probe until it answers (it throws why not yet); fails at once when one of the processes exits
 * (the failure message adds every process's log later).
 */
const waitUntil = waitWhileRunning((message) => new ControlPlaneStartError(message), 200);

async function describeFailure(error: unknown, processes: ManagedProcess[], dir: string, kept: boolean) {
  const parts = [`could not start the control plane: ${(error as Error).message}`];
  for (const p of processes) {
    parts.push(
      `--- last lines of ${p.logPath}${kept ? "" : " (removed; AGENTID_CONTROLPLANE_KEEP=1 keeps it)"} ---`,
    );
    parts.push(await tailFile(p.logPath, 25));
  }
  if (kept) parts.push(`(directory kept: ${dir})`);
  return parts.join("\n");
}

export function kubeConfigFor(server: string, caPem: string, certPem: string, keyPem: string): KubeConfig {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "agentid-local", server, caData: b64(caPem), skipTLSVerify: false }],
    users: [{ name: ADMIN_USER, certData: b64(certPem), keyData: b64(keyPem) }],
    contexts: [{ name: "agentid-local", cluster: "agentid-local", user: ADMIN_USER }],
    currentContext: "agentid-local",
  });
  return kc;
}

/**
 * Starts etcd and kube-apiserver on free loopback ports in a fresh temporary directory. A port taken by
 * another process between choosing and binding it ("address already in use") costs one retry, not a failure.
 */
export async function startControlPlane(options: StartControlPlaneOptions = {}): Promise<ControlPlane> {
  try {
    return await startOnce(options);
  } catch (error) {
    if (!(error instanceof ControlPlaneStartError) || !/address already in use/.test(error.message))
      throw error;
    (options.progress ?? ((line: string) => process.stderr.write(`[controlplane] ${line}\n`)))(
      "a chosen port was taken by another process; retrying with new ports",
    );
    return startOnce(options);
  }
}

async function startOnce(options: StartControlPlaneOptions): Promise<ControlPlane> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`[controlplane] ${line}\n`));
  const keep = options.keep ?? env.AGENTID_CONTROLPLANE_KEEP === "1";
  const binaries = options.binaries ?? (await ensureControlPlaneBinaries({ env, progress }));
  const tmpRoot = options.tmpRoot ?? tmpdir();
  for (const dir of reapStaleControlPlanes(tmpRoot, CONTROL_PLANE_DIR_PREFIX)) {
    progress(`removed a control plane left behind by a killed process: ${dir}`);
  }

  const started = Date.now();
  const deadline = started + (options.startTimeoutMs ?? 120_000);
  const dir = await mkdtemp(join(tmpRoot, CONTROL_PLANE_DIR_PREFIX));
  const processes: ManagedProcess[] = [];
  let stopped = false;
  const removeDir = () => {
    if (!keep) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  };
  const unregister = onProcessExit(() => {
    for (const p of processes) p.killNow();
    removeDir();
  });
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // kube-apiserver first: it would otherwise log etcd connection errors while shutting down.
    for (const p of [...processes].reverse()) await p.stop();
    if (!keep) await rm(dir, { recursive: true, force: true });
    unregister();
  };

  let agent: Agent | undefined;
  try {
    await writeFile(join(dir, "owner.json"), JSON.stringify({ pid: process.pid }));
    const logsDir = join(dir, "logs");
    const certDir = join(dir, "pki");
    await Promise.all([mkdir(logsDir), mkdir(certDir, { mode: 0o700 })]);
    const placement = options.placement;
    const pki = await createControlPlanePki(placement?.pki);
    const files = await writePkiFiles(certDir, pki);
    const admin = new Agent({ connect: { ca: pki.caPem, cert: pki.adminCertPem, key: pki.adminKeyPem } });
    agent = admin;
    const [etcdPort, peerPort, apiPort] = placement
      ? [placement.ports.etcd, placement.ports.etcdPeer, placement.ports.apiserver]
      : ((await freePorts(3)) as [number, number, number]);
    const launch = (name: string, binary: string, args: string[]) => {
      const [command, argv] = placement ? placement.command(binary, args) : [binary, args];
      return startProcess(name, command, argv, join(logsDir, `${name}.log`));
    };

    const etcd = launch(
      "etcd",
      binaries.etcd,
      etcdArgs({ dataDir: join(dir, "etcd"), clientPort: etcdPort, peerPort }),
    );
    processes.push(etcd);
    const etcdUrl = `http://127.0.0.1:${placement ? await placement.expose(etcdPort) : etcdPort}`;
    await waitUntil("etcd /health", deadline, [etcd], async () => {
      const res = await request(`${etcdUrl}/health`);
      const body = await res.body.text();
      if (res.statusCode === 200 && body.includes('"health":"true"')) return true;
      throw new Error(`${res.statusCode} ${body}`);
    });
    const etcdReady = Date.now();

    const kas = launch(
      "kube-apiserver",
      binaries.kubeApiserver,
      kubeApiserverArgs({
        // Inside a namespace etcd is on that namespace's loopback, at its own port.
        etcdUrl: `http://127.0.0.1:${etcdPort}`,
        port: apiPort,
        certDir,
        ...files,
        extraArgs: {
          ...(placement?.bindAddress ? { "bind-address": placement.bindAddress } : {}),
          // In a cluster kube-apiserver calls the kubelet (logs, exec) with the admin's certificate.
          ...(placement
            ? { "kubelet-client-certificate": files.adminCertFile, "kubelet-client-key": files.adminKeyFile }
            : {}),
          ...options.apiserverArgs,
        },
      }),
    );
    processes.push(kas);
    const server = `https://127.0.0.1:${placement ? await placement.expose(apiPort) : apiPort}`;
    const get = async (path: string) => {
      const res = await request(`${server}${path}`, { dispatcher: admin });
      const body = await res.body.text();
      if (res.statusCode === 200) return true;
      throw new Error(`${path}: ${res.statusCode} ${body.slice(0, 300)}`);
    };
    await waitUntil("kube-apiserver /readyz", deadline, [etcd, kas], () => get("/readyz"));
    // The `default` namespace is created by a post-start controller; clients expect it to exist.
    await waitUntil("namespace default", deadline, [etcd, kas], () => get("/api/v1/namespaces/default"));

    // Relying parties (our operator) fetch the issuer's discovery document and JWKS without credentials.
    const binding = await request(`${server}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings`, {
      dispatcher: admin,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "agentid:service-account-issuer-discovery" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "system:service-account-issuer-discovery",
        },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:unauthenticated" },
          { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:authenticated" },
        ],
      }),
    });
    const bindingBody = await binding.body.text();
    if (binding.statusCode !== 201) {
      throw new ControlPlaneStartError(
        `creating the discovery ClusterRoleBinding: ${binding.statusCode} ${bindingBody}`,
      );
    }

    const kubeConfig = kubeConfigFor(server, pki.caPem, pki.adminCertPem, pki.adminKeyPem);
    const kubeconfigPath = join(dir, "kubeconfig");
    await writeFile(kubeconfigPath, kubeConfig.exportConfig(), { mode: 0o600 });

    const startupMs = Date.now() - started;
    progress(
      `control plane ready at ${server} in ${formatElapsed(startupMs)} ` +
        `(etcd ${formatElapsed(etcdReady - started)}, kube-apiserver ${formatElapsed(Date.now() - etcdReady)}); ` +
        `logs in ${logsDir}`,
    );
    reportUnexpectedExits(processes, progress, () => stopped);
    return {
      kubeConfig,
      kubeconfigPath,
      issuerUrl: issuerUrlFor(apiPort),
      server,
      etcdUrl,
      caPem: pki.caPem,
      adminCertPem: pki.adminCertPem,
      adminKeyPem: pki.adminKeyPem,
      dir,
      logs: { etcd: etcd.logPath, kubeApiserver: kas.logPath },
      pids: { etcd: etcd.pid, kubeApiserver: kas.pid },
      startupMs,
      pki,
      pkiFiles: files,
      apiserverPort: apiPort,
      stop,
    };
  } catch (error) {
    for (const p of [...processes].reverse()) await p.stop(2_000);
    const message = await describeFailure(error, processes, dir, keep);
    stopped = true;
    removeDir();
    unregister();
    throw new ControlPlaneStartError(message, { cause: error });
  } finally {
    await agent?.close();
  }
}
