import { createHash } from "node:crypto";
import { access, constants, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type BuildStamp,
  binariesFromEnvironment,
  cacheRoot,
  compareGoVersions,
  formatElapsed,
  stampMatches,
} from "./controlplane-binaries.ts";
import {
  type BinarySpec,
  binarySpecs,
  binaryVersionOutput,
  ControlPlaneBuildError,
  goVersion,
  readWrapperVersions,
  runGoBuild,
} from "./controlplane-go.ts";

export { ControlPlaneBuildError, TOOLS_DIR } from "./controlplane-go.ts";

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

export async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Hash of what a wrapper module builds from: go.mod, go.sum and any Go source of its own (tools/pause). */
async function moduleHash(moduleDir: string): Promise<string> {
  const hash = createHash("sha256");
  const files = (await readdir(moduleDir)).filter(
    (f) => f === "go.mod" || f === "go.sum" || f.endsWith(".go"),
  );
  for (const file of files.sort()) hash.update(await readFile(join(moduleDir, file)));
  return hash.digest("hex").slice(0, 16);
}

async function readStamp(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}

export interface BuildContext {
  env: NodeJS.ProcessEnv;
  dir: string;
  /** The local Go version, undefined when there is no `go`. */
  go: string | undefined;
  goMinimum: string;
  force: boolean;
  progress: (line: string) => void;
}

/** Returns the cached binary when its version and build stamp are right, else builds it. */
/** Exported for the cluster's binaries (cluster-binaries.ts), which share the cache and its stamps. */
export async function findOrBuild(
  spec: BinarySpec,
  ctx: BuildContext,
): Promise<{ path: string; source: string }> {
  const { dir, go } = ctx;
  const path = join(dir, spec.name);
  const stampPath = `${path}.build.json`;
  const wanted: BuildStamp = {
    binary: spec.name,
    version: spec.version,
    go: go ?? "",
    moduleHash: await moduleHash(spec.moduleDir),
  };
  // Without Go a cached binary of the right version is still good; with Go, a new Go means a rebuild.
  const stampOk = stampMatches(await readStamp(stampPath), wanted, { ignoreGo: go === undefined });
  const reported = spec.versionOf((await binaryVersionOutput(path)) ?? "");
  if (!ctx.force && stampOk && reported === spec.version) {
    ctx.progress(`${spec.name} ${spec.version} found in ${dir}`);
    return { path, source: "cache" };
  }
  if (!go) {
    throw new ControlPlaneBuildError(
      `Go is not installed (no 'go' on PATH), and ${spec.name} ${spec.version} is not in ${dir}. ` +
        `Install Go >= ${ctx.goMinimum} (https://go.dev/dl/), or set KUBEBUILDER_ASSETS to a directory ` +
        "holding kube-apiserver and etcd (envtest binaries, e.g. from setup-envtest).",
    );
  }
  if (compareGoVersions(go, ctx.goMinimum) < 0) {
    throw new ControlPlaneBuildError(
      `${go} is too old to build ${spec.name} ${spec.version}: Go >= ${ctx.goMinimum} is needed ` +
        "(GOTOOLCHAIN=local is set, so Go will not download a newer toolchain by itself). " +
        "Upgrade Go, or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd.",
    );
  }
  await mkdir(dir, { recursive: true });
  ctx.progress(
    `building ${spec.name} ${spec.version} with ${go} into ${dir} (${spec.buildHint ?? FIRST_BUILD_HINT}; later builds reuse Go's caches)`,
  );
  const temp = `${path}.tmp-${process.pid}`;
  try {
    const elapsed = await runGoBuild(spec, temp, ctx.env, ctx.progress);
    const built = spec.versionOf((await binaryVersionOutput(temp)) ?? "");
    if (built !== spec.version) {
      throw new ControlPlaneBuildError(
        `built ${spec.name} reports version ${built ?? "(none)"}, expected ${spec.version}`,
      );
    }
    // Rename last, so a concurrent or interrupted build never leaves a half-written binary in place.
    await rename(temp, path);
    await writeFile(stampPath, `${JSON.stringify(wanted, null, 2)}\n`);
    ctx.progress(`built ${spec.name} ${spec.version} in ${formatElapsed(elapsed)}`);
    return { path, source: "built" };
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * Returns paths of kube-apiserver and etcd: from KUBEBUILDER_ASSETS / TEST_ASSET_* when set, else from the
 * cache, building what is missing or stale with the local Go toolchain.
 */
export async function ensureControlPlaneBinaries(options: EnsureOptions = {}): Promise<ControlPlaneBinaries> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((line: string) => process.stderr.write(`[controlplane] ${line}\n`));
  const fromEnv = binariesFromEnvironment(env);
  for (const key of ["kubeApiserver", "etcd"] as const) {
    const path = fromEnv[key];
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
  const ctx: BuildContext = {
    env,
    dir: join(options.cacheDir ?? cacheRoot(env), versions.kubernetes),
    go: await goVersion(env),
    goMinimum: versions.goMinimum,
    force: options.force === true,
    progress,
  };
  const specs = binarySpecs(versions);
  const resolveOne = async (name: BinarySpec["name"], key: "kubeApiserver" | "etcd") => {
    const given = fromEnv[key];
    if (given !== undefined) return { path: given, source: fromEnv.origin[key] ?? "" };
    const spec = specs.find((s) => s.name === name);
    if (!spec) throw new ControlPlaneBuildError(`internal error: no build recipe for ${name}`);
    return findOrBuild(spec, ctx);
  };
  // etcd first: it builds in a minute or two and proves the toolchain before the long kube-apiserver build.
  const etcd = await resolveOne("etcd", "etcd");
  const kas = await resolveOne("kube-apiserver", "kubeApiserver");
  return {
    kubeApiserver: kas.path,
    etcd: etcd.path,
    source: { kubeApiserver: kas.source, etcd: etcd.source },
  };
}
