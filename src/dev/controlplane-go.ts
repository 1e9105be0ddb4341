import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  etcdVersionFromOutput,
  formatElapsed,
  kubeApiserverVersionFromOutput,
  type WrapperVersions,
  wrapperVersions,
} from "./controlplane-binaries.ts";

/** Running `go` and the built binaries: the recipes for both binaries and the Go environment they build in. */

const execFileAsync = promisify(execFile);

/** Where the Go wrapper modules live (only go.mod and go.sum are committed there). */
export const TOOLS_DIR = fileURLToPath(new URL("../../tools/controlplane/", import.meta.url));

export class ControlPlaneBuildError extends Error {
  override name = "ControlPlaneBuildError";
}

export interface BinarySpec {
  /** The file name in the cache, e.g. "kube-apiserver"; the cluster adds kubelet, kube-scheduler, ... */
  name: string;
  moduleDir: string;
  version: string;
  goArgs(output: string): string[];
  versionOf(output: string): string | undefined;
  /** What a first build costs, for the progress line (default: the control plane's figure). */
  buildHint?: string;
}

/** `-X` flags that stamp a Kubernetes binary with its release version, as upstream's release builds do. */
export function kubernetesVersionStamp(k8s: string): string[] {
  const [major, minor] = k8s.replace(/^v/, "").split(".");
  return [
    `-X k8s.io/component-base/version.gitVersion=${k8s}`,
    `-X k8s.io/component-base/version.gitMajor=${major}`,
    `-X k8s.io/component-base/version.gitMinor=${minor}`,
    "-X k8s.io/component-base/version.gitTreeState=clean",
    `-X k8s.io/client-go/pkg/version.gitVersion=${k8s}`,
    `-X k8s.io/client-go/pkg/version.gitMajor=${major}`,
    `-X k8s.io/client-go/pkg/version.gitMinor=${minor}`,
  ];
}

/** `go build` arguments for a Kubernetes command: the tags and static linking of upstream release builds. */
export function kubernetesGoArgs(k8s: string, pkg: string, output: string): string[] {
  return [
    "build",
    "-trimpath",
    "-tags",
    "selinux,notest,grpcnotrace",
    "-ldflags",
    ["-s", "-w", ...kubernetesVersionStamp(k8s)].join(" "),
    "-o",
    output,
    pkg,
  ];
}

export function binarySpecs(versions: WrapperVersions): BinarySpec[] {
  const k8s = versions.kubernetes;
  return [
    {
      name: "etcd",
      moduleDir: join(TOOLS_DIR, "etcd"),
      version: versions.etcd,
      goArgs: (output) => [
        "build",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        output,
        "go.etcd.io/etcd/server/v3",
      ],
      versionOf: etcdVersionFromOutput,
    },
    {
      name: "kube-apiserver",
      moduleDir: join(TOOLS_DIR, "kube-apiserver"),
      version: k8s,
      // The tags and static linking match upstream release builds (hack/lib/golang.sh).
      goArgs: (output) => kubernetesGoArgs(k8s, "k8s.io/kubernetes/cmd/kube-apiserver", output),
      versionOf: kubeApiserverVersionFromOutput,
    },
  ];
}

/**
 * The environment every `go` call gets: no toolchain downloads, static binaries, go.sum as committed.
 * The user's GOFLAGS are replaced, so that e.g. -mod=vendor cannot break the build.
 */
export function goEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...env,
    GOTOOLCHAIN: "local",
    CGO_ENABLED: "0",
    GOWORK: "off",
    GOFLAGS: "-mod=readonly -buildvcs=false",
  };
}

export async function readWrapperVersions(): Promise<WrapperVersions> {
  const [kas, etcd] = await Promise.all([
    readFile(join(TOOLS_DIR, "kube-apiserver", "go.mod"), "utf8"),
    readFile(join(TOOLS_DIR, "etcd", "go.mod"), "utf8"),
  ]);
  return wrapperVersions(kas, etcd);
}

/** The Go version on PATH ("go1.26.8"), or undefined when there is no `go`. */
export async function goVersion(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync("go", ["env", "GOVERSION"], { env: goEnvironment(env) });
    return stdout.trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ControlPlaneBuildError(`'go env GOVERSION' failed: ${(error as Error).message}`);
  }
}

/** Runs `<binary> --version`; undefined when it cannot run. */
export async function binaryVersionOutput(path: string): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await execFileAsync(path, ["--version"], { timeout: 30_000 });
    return `${stdout}\n${stderr}`;
  } catch {
    return undefined;
  }
}

export async function runGoBuild(
  spec: BinarySpec,
  output: string,
  env: NodeJS.ProcessEnv,
  progress: (line: string) => void,
) {
  const started = Date.now();
  const child = spawn("go", spec.goArgs(output), {
    cwd: spec.moduleDir,
    env: goEnvironment(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      // Module downloads are the slow, silent part of a first build: show them, keep the rest for errors.
      if (line.startsWith("go: downloading")) progress(`  ${line}`);
    });
  }
  const heartbeat = setInterval(() => {
    progress(`  still building ${spec.name} (${formatElapsed(Date.now() - started)})`);
  }, 30_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", resolve);
    });
    if (code !== 0) {
      throw new ControlPlaneBuildError(
        `go build of ${spec.name} ${spec.version} failed (exit ${code}) in ${spec.moduleDir}:\n${lines
          .filter((l) => !l.startsWith("go: downloading"))
          .slice(-40)
          .join("\n")}`,
      );
    }
  } finally {
    clearInterval(heartbeat);
  }
  return Date.now() - started;
}
