import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { access, constants, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type BuildStamp,
  binariesFromEnvironment,
  cacheRoot,
  compareGoVersions,
  etcdVersionFromOutput,
  formatElapsed,
  kubeApiserverVersionFromOutput,
  stampMatches,
  type WrapperVersions,
  wrapperVersions,
} from "./controlplane-binaries.ts";

const execFileAsync = promisify(execFile);

/** Where the Go wrapper modules live (only go.mod and go.sum are committed there). */
export const TOOLS_DIR = fileURLToPath(new URL("../../tools/controlplane/", import.meta.url));

/** Measured on a 2-core machine with an empty Go module and build cache; see the README. */
export const FIRST_BUILD_HINT =
  "the first build downloads ~150 Go modules (~700 MB) and takes ~10 minutes on 2 idle cores, more on a busy machine";

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  etcd: string;
  /** For each binary: "built", "cache", or the environment variable it came from. */
  source: { kubeApiserver: string; etcd: string };
}

export interface EnsureOptions {
  env?: NodeJS.ProcessEnv;
  /** Overrides the cache root (default: see `cacheRoot`). */
  cacheDir?: string;
  /** Rebuild even when the cache holds the right versions. */
  force?: boolean;
  /** Progress lines; stderr by default. */
  progress?: (line: string) => void;
}

export class ControlPlaneBuildError extends Error {
  override name = "ControlPlaneBuildError";
}

interface BinarySpec {
  name: "kube-apiserver" | "etcd";
  moduleDir: string;
  version: string;
  goArgs(output: string): string[];
  versionOf(output: string): string | undefined;
}

function binarySpecs(versions: WrapperVersions): BinarySpec[] {
  const k8s = versions.kubernetes;
  const [major, minor] = k8s.replace(/^v/, "").split(".");
  const stamp = [
    `-X k8s.io/component-base/version.gitVersion=${k8s}`,
    `-X k8s.io/component-base/version.gitMajor=${major}`,
    `-X k8s.io/component-base/version.gitMinor=${minor}`,
    "-X k8s.io/component-base/version.gitTreeState=clean",
    `-X k8s.io/client-go/pkg/version.gitVersion=${k8s}`,
    `-X k8s.io/client-go/pkg/version.gitMajor=${major}`,
    `-X k8s.io/client-go/pkg/version.gitMinor=${minor}`,
  ];
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
      goArgs: (output) => [
        "build",
        "-trimpath",
        "-tags",
        "selinux,notest,grpcnotrace",
        "-ldflags",
        ["-s", "-w", ...stamp].join(" "),
        "-o",
        output,
        "k8s.io/kubernetes/cmd/kube-apiserver",
      ],
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

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function moduleHash(moduleDir: string): Promise<string> {
  const hash = createHash("sha256");
  for (const file of ["go.mod", "go.sum"]) hash.update(await readFile(join(moduleDir, file)));
  return hash.digest("hex").slice(0, 16);
}

async function readStamp(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}

async function runGoBuild(
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

/**
 * Returns paths of kube-apiserver and etcd: from KUBEBUILDER_ASSETS / TEST_ASSET_* when set, else from the
 * cache, building what is missing or stale with the local Go toolchain.
 */
export async function ensureControlPlaneBinaries(options: EnsureOptions = {}): Promise<ControlPlaneBinaries> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`[controlplane] ${line}\n`));
  const fromEnv = binariesFromEnvironment(env);
  for (const [key, path] of [
    ["kubeApiserver", fromEnv.kubeApiserver],
    ["etcd", fromEnv.etcd],
  ] as const) {
    if (path !== undefined && !(await isExecutable(path))) {
      throw new ControlPlaneBuildError(
        `${fromEnv.origin[key]} names ${path}, which is not an executable file`,
      );
    }
  }
  if (fromEnv.kubeApiserver && fromEnv.etcd) {
    progress(`using kube-apiserver ${fromEnv.kubeApiserver} and etcd ${fromEnv.etcd} from the environment`);
    return {
      kubeApiserver: fromEnv.kubeApiserver,
      etcd: fromEnv.etcd,
      source: { kubeApiserver: fromEnv.origin.kubeApiserver ?? "", etcd: fromEnv.origin.etcd ?? "" },
    };
  }

  const versions = await readWrapperVersions();
  const dir = join(options.cacheDir ?? cacheRoot(env), versions.kubernetes);
  const go = await goVersion(env);
  const specs = binarySpecs(versions).filter((s) =>
    s.name === "etcd" ? fromEnv.etcd === undefined : fromEnv.kubeApiserver === undefined,
  );
  const result: Record<string, { path: string; source: string }> = {};
  if (fromEnv.kubeApiserver) {
    result["kube-apiserver"] = { path: fromEnv.kubeApiserver, source: fromEnv.origin.kubeApiserver ?? "" };
  }
  if (fromEnv.etcd) result.etcd = { path: fromEnv.etcd, source: fromEnv.origin.etcd ?? "" };

  for (const spec of specs) {
    const path = join(dir, spec.name);
    const stampPath = `${path}.build.json`;
    const wanted: BuildStamp = {
      binary: spec.name,
      version: spec.version,
      go: go ?? "",
      moduleHash: await moduleHash(spec.moduleDir),
    };
    const found = await readStamp(stampPath);
    // Without Go a cached binary of the right version is still good; with Go, a new Go means a rebuild.
    const stampOk = stampMatches(found, wanted, { ignoreGo: go === undefined });
    const reported = spec.versionOf((await binaryVersionOutput(path)) ?? "");
    if (!options.force && stampOk && reported === spec.version) {
      progress(`${spec.name} ${spec.version} found in ${dir}`);
      result[spec.name] = { path, source: "cache" };
      continue;
    }
    if (!go) {
      throw new ControlPlaneBuildError(
        `Go is not installed (no 'go' on PATH), and ${spec.name} ${spec.version} is not in ${dir}. ` +
          `Install Go >= ${versions.goMinimum} (https://go.dev/dl/), or set KUBEBUILDER_ASSETS to a directory ` +
          "holding kube-apiserver and etcd (envtest binaries, e.g. from setup-envtest).",
      );
    }
    if (compareGoVersions(go, versions.goMinimum) < 0) {
      throw new ControlPlaneBuildError(
        `${go} is too old to build ${spec.name} ${spec.version}: Go >= ${versions.goMinimum} is needed ` +
          "(GOTOOLCHAIN=local is set, so Go will not download a newer toolchain by itself). " +
          "Upgrade Go, or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd.",
      );
    }
    await mkdir(dir, { recursive: true });
    progress(
      `building ${spec.name} ${spec.version} with ${go} into ${dir} (${FIRST_BUILD_HINT}; later builds reuse Go's caches)`,
    );
    const temp = `${path}.tmp-${process.pid}`;
    try {
      const elapsed = await runGoBuild(spec, temp, env, progress);
      const built = spec.versionOf((await binaryVersionOutput(temp)) ?? "");
      if (built !== spec.version) {
        throw new ControlPlaneBuildError(
          `built ${spec.name} reports version ${built ?? "(none)"}, expected ${spec.version}`,
        );
      }
      // Rename last, so a concurrent or interrupted build never leaves a half-written binary in place.
      await rename(temp, path);
      await writeFile(stampPath, `${JSON.stringify(wanted, null, 2)}\n`);
      progress(`built ${spec.name} ${spec.version} in ${formatElapsed(elapsed)}`);
      result[spec.name] = { path, source: "built" };
    } finally {
      await rm(temp, { force: true });
    }
  }
  const kas = result["kube-apiserver"];
  const etcd = result.etcd;
  if (!kas || !etcd) throw new ControlPlaneBuildError("internal error: a binary was neither found nor built");
  return {
    kubeApiserver: kas.path,
    etcd: etcd.path,
    source: { kubeApiserver: kas.source, etcd: etcd.source },
  };
}
