import { join } from "node:path";

/**
 * The cluster's configuration files and command lines, as pure functions of its directory, so every choice
 * is explained and tested in one place. The facts behind them (what this kind of machine needs) are in
 * docs/cluster.md.
 */

/** Everything inside the cluster's network namespace: the bridge, its address and the pods' range. */
export const CLUSTER_NETWORK = {
  bridge: "agentid0",
  /** A documentation range (RFC 5737): never routed anywhere, and only inside our namespace. */
  subnet: "198.51.100.0/24",
  /** The bridge's address: the node's IP, where kube-apiserver and the emulator listen for pods. */
  gateway: "198.51.100.1",
  rangeStart: "198.51.100.10",
  rangeEnd: "198.51.100.250",
  /** Service range: only the `kubernetes` Service is given a route (a DNAT rule in the namespace). */
  serviceRange: "10.0.0.0/24",
  kubernetesServiceIp: "10.0.0.1",
} as const;

/** Fixed ports: the namespace holds nothing but the cluster. */
export const CLUSTER_PORTS = {
  etcd: 2379,
  etcdPeer: 2380,
  apiserver: 6443,
  kubelet: 10250,
  kubeletHealthz: 10248,
  controllerManager: 10257,
  scheduler: 10259,
} as const;

export const NODE_NAME = "agentid-node";

/** Images the cluster runs never come from a registry: fixed tags, imported into containerd. */
export const PAUSE_IMAGE = "localhost/agentid/pause:1";

export interface ClusterPaths {
  dir: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  containerdConfig: string;
  runcRoot: string;
  cniConfDir: string;
  cniIpamDir: string;
  kubeletRoot: string;
  kubeletCertDir: string;
  kubeletConfig: string;
  podLogsDir: string;
  kubeconfigs: string;
  logs: string;
  relay: string;
}

export function clusterPaths(dir: string): ClusterPaths {
  return {
    dir,
    containerdRoot: join(dir, "containerd", "root"),
    containerdState: join(dir, "containerd", "state"),
    containerdSocket: join(dir, "containerd", "containerd.sock"),
    containerdConfig: join(dir, "containerd", "config.toml"),
    runcRoot: join(dir, "runc"),
    cniConfDir: join(dir, "cni", "net.d"),
    cniIpamDir: join(dir, "cni", "ipam"),
    kubeletRoot: join(dir, "kubelet"),
    kubeletCertDir: join(dir, "kubelet-pki"),
    kubeletConfig: join(dir, "kubelet-config.yaml"),
    podLogsDir: join(dir, "pod-logs"),
    kubeconfigs: join(dir, "kubeconfigs"),
    logs: join(dir, "logs"),
    relay: join(dir, "relay"),
  };
}

/** The cgroup every pod lives under (kubelet's cgroupRoot): one per cluster, so teardown removes exactly it. */
export function cgroupRootFor(id: string): string {
  return `/agentid-${id}`;
}

export function netnsNameFor(id: string): string {
  return `agentid-${id}`;
}

export interface ContainerdConfigInput {
  paths: ClusterPaths;
  cniBinDir: string;
}

/** containerd 1.6 (config version 2): its own root, state and sockets; nothing under /var/lib or /etc. */
export function containerdConfig({ paths, cniBinDir }: ContainerdConfigInput): string {
  const q = (s: string) => JSON.stringify(s);
  return `version = 2
root = ${q(paths.containerdRoot)}
state = ${q(paths.containerdState)}
# Snapshotters this machine lacks only log errors at start.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = ${q(paths.containerdSocket)}

[ttrpc]
  address = ${q(`${paths.containerdSocket}.ttrpc`)}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(paths.containerdRoot, "opt"))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(PAUSE_IMAGE)}
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE: without this, runc fails every sandbox while
  # writing /proc/self/oom_score_adj ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false
  # Pods' network namespaces are pinned under the state directory, not in /run/netns, so teardown finds them.
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ${q(paths.runcRoot)}

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(cniBinDir)}
    conf_dir = ${q(paths.cniConfDir)}
    max_conf_num = 1
`;
}

/** The pod network: Debian's bridge + host-local plugins on the namespace's own bridge; no masquerade. */
export function cniConfig(paths: ClusterPaths): string {
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "agentid",
      plugins: [
        {
          type: "bridge",
          bridge: CLUSTER_NETWORK.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            dataDir: paths.cniIpamDir,
            ranges: [
              [
                {
                  subnet: CLUSTER_NETWORK.subnet,
                  rangeStart: CLUSTER_NETWORK.rangeStart,
                  rangeEnd: CLUSTER_NETWORK.rangeEnd,
                  gateway: CLUSTER_NETWORK.gateway,
                },
              ],
            ],
            routes: [{ dst: "0.0.0.0/0" }],
          },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeletConfigInput {
  paths: ClusterPaths;
  caFile: string;
  cgroupRoot: string;
}

/** KubeletConfiguration as JSON (YAML's subset); each non-default explained. */
export function kubeletConfig({ paths, caFile, cgroupRoot }: KubeletConfigInput): string {
  const config = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // Inside the namespace: kube-apiserver reaches the node (logs, exec) at the bridge address.
    address: "0.0.0.0",
    port: CLUSTER_PORTS.kubelet,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: CLUSTER_PORTS.kubeletHealthz,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: caFile },
    },
    authorization: { mode: "Webhook" },
    containerRuntimeEndpoint: `unix://${paths.containerdSocket}`,
    // This machine's cgroups are hybrid (v1 controllers, cgroup2 only under `unified`): kubelet runs in v1 mode.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    // Every pod lives under a cgroup of this cluster's own, so teardown removes exactly that.
    cgroupRoot,
    cgroupsPerQOS: true,
    failSwapOn: false,
    // No cluster DNS: pods get no resolv.conf from the host either (nothing outside may be reached).
    resolvConf: "",
    podLogsDir: paths.podLogsDir,
    // A developer's nearly full disk must not evict test pods or delete the imported images.
    evictionHard: {
      "memory.available": "50Mi",
      "nodefs.available": "1%",
      "nodefs.inodesFree": "1%",
      "imagefs.available": "1%",
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // Fast feedback in tests: how soon the node reports, and how soon a changed pod is looked at again.
    nodeStatusUpdateFrequency: "4s",
    syncFrequency: "10s",
    serializeImagePulls: false,
    rotateCertificates: false,
    maxPods: 60,
    logging: { format: "text" },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

export interface KubeletArgsInput {
  paths: ClusterPaths;
  kubeconfig: string;
}

export function kubeletArgs({ paths, kubeconfig }: KubeletArgsInput): string[] {
  return [
    `--config=${paths.kubeletConfig}`,
    `--kubeconfig=${kubeconfig}`,
    `--root-dir=${paths.kubeletRoot}`,
    `--cert-dir=${paths.kubeletCertDir}`,
    `--hostname-override=${NODE_NAME}`,
    `--node-ip=${CLUSTER_NETWORK.gateway}`,
    "--v=1",
  ];
}

export interface ControllerArgsInput {
  kubeconfig: string;
  caFile: string;
  serviceAccountKeyFile: string;
}

export function kubeControllerManagerArgs(input: ControllerArgsInput): string[] {
  return [
    `--kubeconfig=${input.kubeconfig}`,
    `--authentication-kubeconfig=${input.kubeconfig}`,
    `--authorization-kubeconfig=${input.kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${CLUSTER_PORTS.controllerManager}`,
    "--leader-elect=false",
    // The `kube-root-ca.crt` ConfigMap in every namespace, which projected service-account volumes read.
    `--root-ca-file=${input.caFile}`,
    `--service-account-private-key-file=${input.serviceAccountKeyFile}`,
    // Each controller acts as its own ServiceAccount, as in kubeadm clusters (the controller-manager's own role
    // only covers what it needs to mint their tokens).
    "--use-service-account-credentials=true",
    `--service-cluster-ip-range=${CLUSTER_NETWORK.serviceRange}`,
    "--allocate-node-cidrs=false",
    "--profiling=false",
  ];
}

export function kubeSchedulerArgs(kubeconfig: string): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${CLUSTER_PORTS.scheduler}`,
    "--leader-elect=false",
    "--profiling=false",
  ];
}

/** kube-apiserver flags that turn the integration-test control plane into a cluster's. */
export function clusterApiserverArgs(): Record<string, string> {
  return {
    // Pods reach it at the bridge address (and the `kubernetes` Service IP, through a DNAT rule).
    "advertise-address": CLUSTER_NETWORK.gateway,
    "endpoint-reconciler-type": "lease",
    "authorization-mode": "Node,RBAC",
    "enable-admission-plugins":
      "NodeRestriction,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,PodSecurity",
    "disable-admission-plugins": "",
    // Webhook Services are called at their endpoints (pod IPs on the bridge): there is no kube-proxy.
    "enable-aggregator-routing": "true",
    "service-cluster-ip-range": CLUSTER_NETWORK.serviceRange,
    // Logs and exec go to the node's address on the bridge; its name resolves nowhere (no DNS in the namespace).
    "kubelet-preferred-address-types": "InternalIP",
  };
}

/** kubeconfig YAML (JSON) for a component, with a client certificate, pointing at `server`. */
export function componentKubeconfig(input: {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  user: string;
}): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return `${JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        {
          name: "agentid",
          cluster: { server: input.server, "certificate-authority-data": b64(input.caPem) },
        },
      ],
      users: [
        {
          name: input.user,
          user: { "client-certificate-data": b64(input.certPem), "client-key-data": b64(input.keyPem) },
        },
      ],
      contexts: [{ name: "agentid", context: { cluster: "agentid", user: input.user } }],
      "current-context": "agentid",
    },
    null,
    2,
  )}\n`;
}

/** Kernel settings kubelet changes at start (global, not per namespace): recorded before, restored after. */
export const KUBELET_SYSCTLS = [
  "kernel/panic",
  "kernel/panic_on_oops",
  "vm/overcommit_memory",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
] as const;
