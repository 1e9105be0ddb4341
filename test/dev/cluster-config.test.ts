import { describe, expect, it } from "vitest";
import { clusterBinariesFromEnvironment, clusterBinarySpecs } from "../../src/dev/cluster-binaries.ts";
import {
  CLUSTER_NETWORK,
  cgroupRootFor,
  clusterApiserverArgs,
  clusterPaths,
  cniConfig,
  containerdConfig,
  kubeControllerManagerArgs,
  kubeletArgs,
  kubeletConfig,
  PAUSE_IMAGE,
} from "../../src/dev/cluster-config.ts";
import { missingRequirements } from "../../src/dev/cluster-packages.ts";
import { inNetns, mountsUnder } from "../../src/dev/cluster-system.ts";

const paths = clusterPaths("/tmp/agentid-cluster-abc123");

describe("containerd configuration", () => {
  const config = containerdConfig({ paths, cniBinDir: "/usr/lib/cni" });

  it("keeps every file of containerd and runc under the cluster's directory", () => {
    expect(config).toContain('root = "/tmp/agentid-cluster-abc123/containerd/root"');
    expect(config).toContain('state = "/tmp/agentid-cluster-abc123/containerd/state"');
    expect(config).toContain('address = "/tmp/agentid-cluster-abc123/containerd/containerd.sock"');
    expect(config).toContain('Root = "/tmp/agentid-cluster-abc123/runc"');
    expect(config).not.toMatch(/\/var\/lib|\/etc\/cni|\/opt\/cni/);
  });

  it("restricts oom_score_adj (the VM lacks CAP_SYS_RESOURCE) and uses the locally built pause image", () => {
    expect(config).toContain("restrict_oom_score_adj = true");
    expect(config).toContain(`sandbox_image = "${PAUSE_IMAGE}"`);
    expect(config).toContain("SystemdCgroup = false");
    expect(config).toContain("netns_mounts_under_state_dir = true");
  });
});

describe("pod network", () => {
  it("puts pods on the namespace's bridge in the documentation range, with no masquerade", () => {
    const plugin = JSON.parse(cniConfig(paths)).plugins[0];
    expect(plugin).toMatchObject({ type: "bridge", bridge: CLUSTER_NETWORK.bridge, ipMasq: false });
    expect(plugin.ipam.ranges[0][0]).toMatchObject({ subnet: "198.51.100.0/24", gateway: "198.51.100.1" });
    expect(plugin.ipam.dataDir).toBe("/tmp/agentid-cluster-abc123/cni/ipam");
  });

  it("runs components in the network namespace only (kubelet's mounts must stay visible to runc)", () => {
    expect(inNetns("agentid-abc123", "/bin/kubelet", ["--v=1"])).toEqual([
      "nsenter",
      ["--net=/run/netns/agentid-abc123", "--", "/bin/kubelet", "--v=1"],
    ]);
  });
});

describe("kubelet", () => {
  const config = JSON.parse(kubeletConfig({ paths, caFile: "/ca.crt", cgroupRoot: cgroupRootFor("abc123") }));

  it("runs in cgroup v1 mode with the cgroupfs driver and its own cgroup root", () => {
    expect(config).toMatchObject({
      failCgroupV1: false,
      cgroupDriver: "cgroupfs",
      failSwapOn: false,
      cgroupRoot: "/agentid-abc123",
    });
  });

  it("serves no anonymous or read-only port and reads no resolv.conf from the host", () => {
    expect(config.readOnlyPort).toBe(0);
    expect(config.authentication.anonymous.enabled).toBe(false);
    expect(config.resolvConf).toBe("");
  });

  it("keeps its state in the cluster's directory and registers at the bridge address", () => {
    const args = kubeletArgs({ paths, kubeconfig: "/k" });
    expect(args).toContain("--root-dir=/tmp/agentid-cluster-abc123/kubelet");
    expect(args).toContain("--node-ip=198.51.100.1");
  });
});

describe("control plane of the cluster", () => {
  it("turns on the node authorizer, ServiceAccount admission and endpoint routing", () => {
    const args = clusterApiserverArgs();
    expect(args["authorization-mode"]).toBe("Node,RBAC");
    expect(args["enable-admission-plugins"]).toContain("ServiceAccount");
    expect(args["enable-admission-plugins"]).toContain("NodeRestriction");
    // An empty value removes the integration tests' --disable-admission-plugins=ServiceAccount.
    expect(args["disable-admission-plugins"]).toBe("");
    expect(args["enable-aggregator-routing"]).toBe("true");
    expect(args["kubelet-preferred-address-types"]).toBe("InternalIP");
  });

  it("gives each controller its own ServiceAccount, so the controller-manager's role suffices", () => {
    const args = kubeControllerManagerArgs({ kubeconfig: "/k", caFile: "/ca", serviceAccountKeyFile: "/sa" });
    expect(args).toContain("--use-service-account-credentials=true");
    expect(args).toContain("--root-ca-file=/ca");
    expect(args).toContain("--leader-elect=false");
  });
});

describe("mounts to undo", () => {
  const mountinfo = [
    "22 1 254:0 / / rw - ext4 /dev/vda rw",
    "500 22 0:50 / /tmp/agentid-cluster-abc123/kubelet rw - ext4 /dev/vda rw",
    "501 500 0:51 / /tmp/agentid-cluster-abc123/kubelet/pods/u/volumes/kubernetes.io~projected/agentid-token rw - tmpfs tmpfs rw",
    "502 22 0:52 / /tmp/agentid-cluster-abc123-other rw - tmpfs tmpfs rw",
    "503 22 0:53 / /tmp/agentid-cluster-abc123/with\\040space rw - tmpfs tmpfs rw",
  ].join("\n");

  it("lists the mounts under the directory only, deepest first, with escaped names decoded", () => {
    expect(mountsUnder("/tmp/agentid-cluster-abc123", mountinfo)).toEqual([
      "/tmp/agentid-cluster-abc123/kubelet/pods/u/volumes/kubernetes.io~projected/agentid-token",
      "/tmp/agentid-cluster-abc123/with space",
      "/tmp/agentid-cluster-abc123/kubelet",
    ]);
  });
});

describe("what the machine needs", () => {
  const has = () => true;

  it("names Linux and kind when not on Linux", () => {
    const state = missingRequirements({ platform: "darwin", uid: 501, isDebian: false, has });
    expect(state).toMatchObject({ ok: false, reason: "not-linux" });
    if (!state.ok) expect(state.message).toContain("npm run e2e:kind");
  });

  it("names root when not root", () => {
    const state = missingRequirements({ platform: "linux", uid: 1000, isDebian: true, has });
    expect(state).toMatchObject({ ok: false, reason: "not-root" });
  });

  it("lists the missing Debian packages, installable on Debian only", () => {
    const missing = (c: string) => !["runc", "buildah"].includes(c);
    expect(missingRequirements({ platform: "linux", uid: 0, isDebian: true, has: missing })).toMatchObject({
      ok: false,
      reason: "packages",
      packages: ["runc", "buildah"],
      canInstall: true,
    });
    expect(missingRequirements({ platform: "linux", uid: 0, isDebian: false, has: missing })).toMatchObject({
      canInstall: false,
    });
    expect(missingRequirements({ platform: "linux", uid: 0, isDebian: true, has })).toEqual({ ok: true });
  });
});

describe("the node's binaries", () => {
  it("come from TEST_ASSET_* first, else from AGENTID_CLUSTER_ASSETS", () => {
    expect(
      clusterBinariesFromEnvironment({
        AGENTID_CLUSTER_ASSETS: "/assets",
        TEST_ASSET_KUBELET: "/my/kubelet",
      }),
    ).toEqual({
      kubelet: "/my/kubelet",
      kubeControllerManager: "/assets/kube-controller-manager",
      kubeScheduler: "/assets/kube-scheduler",
      pause: "/assets/pause",
    });
    expect(clusterBinariesFromEnvironment({})).toEqual({});
  });

  it("are built with the release build's tags and version stamp", () => {
    const kubelet = clusterBinarySpecs("v1.34.4").kubelet;
    const args = kubelet.goArgs("/out/kubelet");
    expect(args).toContain("selinux,notest,grpcnotrace");
    expect(args.join(" ")).toContain("-X k8s.io/component-base/version.gitVersion=v1.34.4");
    expect(args.at(-1)).toBe("k8s.io/kubernetes/cmd/kubelet");
    expect(kubelet.versionOf("Kubernetes v1.34.4")).toBe("v1.34.4");
  });
});
