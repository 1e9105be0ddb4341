import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  binariesFromEnvironment,
  cacheRoot,
  compareGoVersions,
  etcdVersionFromOutput,
  goModGoLine,
  goModRequire,
  kubeApiserverVersionFromOutput,
  stampMatches,
  wrapperVersions,
} from "../../src/dev/controlplane-binaries.ts";
import { TOOLS_DIR } from "../../src/dev/controlplane-build.ts";

describe("go.mod parsing", () => {
  it("reads the pinned versions and the Go minimum from the committed wrapper modules", () => {
    const kas = readFileSync(join(TOOLS_DIR, "kube-apiserver", "go.mod"), "utf8");
    const etcd = readFileSync(join(TOOLS_DIR, "etcd", "go.mod"), "utf8");
    const versions = wrapperVersions(kas, etcd);
    expect(versions.kubernetes).toMatch(/^v1\.(3[4-9])\.\d+$/);
    expect(versions.etcd).toMatch(/^v3\.(5|6)\.\d+$/);
    // The README promises Go >= 1.24: a wrapper that needs more must change the README too.
    expect(versions.goMinimum).toBe("1.24.0");
  });

  it("finds a module in a require block or a single require line, and not in a replace", () => {
    const goMod = [
      "module x",
      "go 1.25.0",
      "require example.com/single v1.2.3",
      "require (",
      "\texample.com/a v0.1.0 // indirect",
      ")",
      "replace example.com/b => example.com/b v9.9.9",
    ].join("\n");
    expect(goModRequire(goMod, "example.com/a")).toBe("v0.1.0");
    expect(goModRequire(goMod, "example.com/single")).toBe("v1.2.3");
    expect(goModRequire(goMod, "example.com/b")).toBeUndefined();
    expect(goModGoLine(goMod)).toBe("1.25.0");
  });

  it("fails clearly when a wrapper lost its main requirement", () => {
    expect(() => wrapperVersions("module x\ngo 1.24.0\n", "module y\n")).toThrow(/k8s\.io\/kubernetes/);
  });
});

describe("versions", () => {
  it("compares Go versions numerically", () => {
    expect(compareGoVersions("go1.26.8", "1.24.0")).toBeGreaterThan(0);
    expect(compareGoVersions("go1.23.12", "1.24.0")).toBeLessThan(0);
    expect(compareGoVersions("go1.24", "1.24.0")).toBe(0);
    expect(compareGoVersions("go1.9.0", "1.10")).toBeLessThan(0);
    expect(compareGoVersions("devel", "1.24.0")).toBeLessThan(0);
  });

  it("reads the versions the binaries report", () => {
    expect(kubeApiserverVersionFromOutput("Kubernetes v1.34.4\n")).toBe("v1.34.4");
    expect(kubeApiserverVersionFromOutput("Kubernetes v0.0.0-master+$Format:%H$")).toBe(
      "v0.0.0-master+$Format:%H$",
    );
    expect(kubeApiserverVersionFromOutput("")).toBeUndefined();
    expect(etcdVersionFromOutput("etcd Version: 3.6.8\nGit SHA: x\n")).toBe("v3.6.8");
    expect(etcdVersionFromOutput("something else")).toBeUndefined();
  });
});

describe("binary lookup", () => {
  it("prefers TEST_ASSET_* over KUBEBUILDER_ASSETS, per binary", () => {
    const found = binariesFromEnvironment({ KUBEBUILDER_ASSETS: "/assets", TEST_ASSET_ETCD: "/bin/my-etcd" });
    expect(found.kubeApiserver).toBe("/assets/kube-apiserver");
    expect(found.etcd).toBe("/bin/my-etcd");
    expect(found.origin).toEqual({ kubeApiserver: "KUBEBUILDER_ASSETS", etcd: "TEST_ASSET_ETCD" });
    expect(binariesFromEnvironment({})).toEqual({ origin: {} });
  });

  it("puts the cache outside the repository, honouring overrides", () => {
    expect(cacheRoot({}, "/home/u")).toBe("/home/u/.cache/agentid/controlplane");
    expect(cacheRoot({ XDG_CACHE_HOME: "/xdg" }, "/home/u")).toBe("/xdg/agentid/controlplane");
    expect(cacheRoot({ AGENTID_CONTROLPLANE_CACHE: "/c", XDG_CACHE_HOME: "/xdg" }, "/home/u")).toBe("/c");
  });

  it("rebuilds when the Go version or the module changed, unless there is no Go to rebuild with", () => {
    const stamp = { binary: "etcd", version: "v3.6.8", go: "go1.26.8", moduleHash: "abc" } as const;
    expect(stampMatches(stamp, stamp)).toBe(true);
    expect(stampMatches({ ...stamp, go: "go1.25.1" }, stamp)).toBe(false);
    expect(stampMatches({ ...stamp, go: "go1.25.1" }, { ...stamp, go: "" }, { ignoreGo: true })).toBe(true);
    expect(stampMatches({ ...stamp, moduleHash: "def" }, stamp)).toBe(false);
    expect(stampMatches(undefined, stamp)).toBe(false);
  });
});
