import { describe, expect, it } from "vitest";
import { etcdArgs, issuerUrlFor, kubeApiserverArgs } from "../../src/dev/controlplane-args.ts";

const input = {
  etcdUrl: "http://127.0.0.1:2379",
  port: 6443,
  certDir: "/tmp/cp/pki",
  caFile: "/tmp/cp/pki/ca.crt",
  servingCertFile: "/tmp/cp/pki/apiserver.crt",
  servingKeyFile: "/tmp/cp/pki/apiserver.key",
  serviceAccountPublicKeyFile: "/tmp/cp/pki/sa.pub",
  serviceAccountSigningKeyFile: "/tmp/cp/pki/sa.key",
};

describe("kube-apiserver flags", () => {
  it("keeps the issuer, its JWKS and the advertised address on loopback", () => {
    const args = kubeApiserverArgs(input);
    expect(args).toContain("--service-account-issuer=https://127.0.0.1:6443");
    expect(args).toContain("--service-account-jwks-uri=https://127.0.0.1:6443/openid/v1/jwks");
    expect(args).toContain("--advertise-address=127.0.0.1");
    expect(args).toContain("--endpoint-reconciler-type=none");
    expect(args).toContain("--bind-address=127.0.0.1");
    expect(issuerUrlFor(6443)).toBe("https://127.0.0.1:6443");
  });

  it("lets callers replace, add and remove flags, each flag once", () => {
    const args = kubeApiserverArgs({
      ...input,
      extraArgs: { "authorization-mode": "Node,RBAC", "feature-gates": "A=true", profiling: "" },
    });
    expect(args.filter((a) => a.startsWith("--authorization-mode="))).toEqual([
      "--authorization-mode=Node,RBAC",
    ]);
    expect(args).toContain("--feature-gates=A=true");
    expect(args.some((a) => a.startsWith("--profiling"))).toBe(false);
  });
});

describe("etcd flags", () => {
  it("serves clients and peers on loopback only, as a single-member cluster", () => {
    const args = etcdArgs({ dataDir: "/tmp/cp/etcd", clientPort: 1, peerPort: 2 });
    expect(args).toContain("--listen-client-urls=http://127.0.0.1:1");
    expect(args).toContain("--listen-peer-urls=http://127.0.0.1:2");
    expect(args).toContain("--initial-cluster=agentid=http://127.0.0.1:2");
  });
});
