import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PAUSE_IMAGE } from "./cluster-config.ts";

const execFileAsync = promisify(execFile);

/**
 * Images for the local cluster, built without a Docker daemon by buildah (Debian's package), cached by the hash of
 * their inputs, handed to containerd as docker-archive files (which keep the image's full name).
 */

export function imagesCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AGENTID_IMAGES_CACHE) return env.AGENTID_IMAGES_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "agentid", "images");
}

/** buildah's own storage lives in the cache too, never in /var/lib/containers. */
function storageArgs(cache: string): string[] {
  return ["--root", join(cache, "storage"), "--runroot", join(cache, "run"), "--storage-driver", "overlay"];
}

export async function buildah(args: string[], cache = imagesCacheDir()): Promise<string> {
  try {
    const { stdout } = await execFileAsync("buildah", [...storageArgs(cache), ...args], {
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`buildah ${args.join(" ")} failed: ${stderr.trim().split("\n").slice(-15).join("\n")}`);
  }
}

/** Runs buildah with its output streamed as progress lines (long builds). */
export async function buildahStreaming(
  args: string[],
  progress: (line: string) => void,
  cache = imagesCacheDir(),
): Promise<void> {
  const child = spawn("buildah", [...storageArgs(cache), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const tail: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      if (/^(STEP|COMMIT|-->|Successfully)/.test(line)) progress(`  ${line}`);
    });
  }
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  if (code !== 0) throw new Error(`buildah ${args.join(" ")} failed (exit ${code}):\n${tail.join("\n")}`);
}

export async function hashFiles(paths: string[], extra = ""): Promise<string> {
  const hash = createHash("sha256");
  hash.update(extra);
  for (const path of paths) {
    hash.update(`\0${path}\0`);
    await new Promise<void>((resolve, reject) => {
      createReadStream(path)
        .on("data", (chunk) => hash.update(chunk))
        .on("end", resolve)
        .on("error", reject);
    });
  }
  return hash.digest("hex").slice(0, 16);
}

/** Writes an image to a docker-archive file atomically (so a cache hit is always a whole file). */
export async function exportImage(image: string, archive: string, cache = imagesCacheDir()): Promise<void> {
  const temp = `${archive}.tmp-${process.pid}`;
  await rm(temp, { force: true });
  await buildah(["push", "--quiet", image, `docker-archive:${temp}:${image}`], cache);
  await rename(temp, archive);
}

/** The sandbox image: only the static pause program, running as nobody. Cached by the binary's hash. */
export async function buildPauseImage(
  pauseBinary: string,
  progress: (line: string) => void,
): Promise<string> {
  const cache = imagesCacheDir();
  await mkdir(cache, { recursive: true });
  const key = await hashFiles([pauseBinary], "pause-image-1");
  const archive = join(cache, `pause-${key}.tar`);
  if (existsSync(archive)) return archive;
  progress(`building the pause image ${PAUSE_IMAGE} with buildah`);
  const container = await buildah(["from", "--quiet", "scratch"], cache);
  try {
    await buildah(["copy", "--quiet", container, pauseBinary, "/pause"], cache);
    await buildah(
      [
        "config",
        "--entrypoint",
        '["/pause"]',
        "--user",
        "65535:65535",
        "--label",
        "org.opencontainers.image.title=agentid pause",
        container,
      ],
      cache,
    );
    await buildah(["commit", "--quiet", container, PAUSE_IMAGE], cache);
  } finally {
    await buildah(["rm", container], cache).catch(() => undefined);
  }
  await exportImage(PAUSE_IMAGE, archive, cache);
  return archive;
}

const execText = async (command: string, args: string[]) =>
  (await execFileAsync(command, args)).stdout.trim();

/** The Node version of the `node` devDependency: the binary npm ships, which the base image carries. */
export const NODE_BINARY = fileURLToPath(new URL("../../node_modules/node/bin/node", import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Debian packages the base image is made of (files as installed on this machine, so no download is needed). */
export const BASE_PACKAGES = ["libc6", "libgcc-s1", "libstdc++6", "busybox-static"] as const;
const HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
/** What the base leaves out of those packages: documentation and translations. */
const BASE_SKIP = /^\/usr\/share\/(doc|lintian|locale|man|gcc|gdb|bug)\//;

export function baseImageName(nodeVersion: string): string {
  return `localhost/agentid/node:${nodeVersion.replace(/^v/, "")}-bookworm-slim`;
}

async function imageExists(image: string, cache: string): Promise<boolean> {
  try {
    await buildah(["inspect", "--type", "image", image], cache);
    return true;
  } catch {
    return false;
  }
}

/**
 * The stand-in for the public `node:<version>-bookworm-slim` image: Debian's libc, libgcc, libstdc++ and a static
 * busybox (for the Dockerfile's RUN lines), with the Node binary npm ships and this machine's npm. Cached by the
 * hash of all of that.
 */
export async function buildNodeBaseImage(progress: (line: string) => void): Promise<string> {
  const cache = imagesCacheDir();
  await mkdir(cache, { recursive: true });
  const nodeVersion = await execText(NODE_BINARY, ["--version"]);
  const image = baseImageName(nodeVersion);
  // dpkg-query's own format syntax, not a template string.
  const format = ["$", "{Package}=$", "{Version}\\n"].join("");
  const versions = await execText("dpkg-query", ["-W", "-f", format, ...BASE_PACKAGES]);
  const npmDir = join(dirname(await realpath(await execText("sh", ["-c", "command -v npm"]))), "..");
  const npmVersion = JSON.parse(await readFile(join(npmDir, "package.json"), "utf8")).version as string;
  // This machine's CA bundle: `npm ci` in the build stages goes through whatever TLS this machine trusts (a
  // proxy's CA, say). Only the build stages see it: the final stages start FROM scratch.
  const caBundle = existsSync(HOST_CA_BUNDLE) ? [HOST_CA_BUNDLE] : [];
  const key = await hashFiles([NODE_BINARY, ...caBundle], `node-base-3\n${versions}\nnpm ${npmVersion}`);
  const marker = join(cache, `node-base-${key}.done`);
  if (existsSync(marker) && (await imageExists(image, cache))) return image;
  progress(
    `building the base image ${image} from Debian packages (${versions.replace(/\n/g, ", ")}), node ${nodeVersion} and npm ${npmVersion}`,
  );
  // Per process: two test runs may build the base at once (buildah's own storage has its own locks).
  const rootfs = join(cache, `node-base-${key}.rootfs-${process.pid}`);
  await rm(rootfs, { recursive: true, force: true });
  // Debian 12's merged /usr: /bin, /lib, /lib64 and /sbin are links into /usr.
  for (const dir of [
    "usr/bin",
    "usr/lib",
    "usr/lib64",
    "usr/sbin",
    "usr/local/bin",
    "usr/local/lib/node_modules",
    "etc",
    "root",
  ]) {
    await mkdir(join(rootfs, dir), { recursive: true });
  }
  for (const dir of ["bin", "lib", "lib64", "sbin"]) await symlink(`usr/${dir}`, join(rootfs, dir));
  await mkdir(join(rootfs, "tmp"), { mode: 0o1777 });
  await chmod(join(rootfs, "tmp"), 0o1777);
  const listed = (await execText("dpkg", ["-L", ...BASE_PACKAGES])).split("\n");
  for (const path of listed) {
    if (!path.startsWith("/") || BASE_SKIP.test(path)) continue;
    const stat = await lstat(path).catch(() => undefined);
    if (!stat || stat.isDirectory()) continue;
    // Place each file under its real directory (/lib/x86_64-linux-gnu is /usr/lib/x86_64-linux-gnu here too).
    const target = join(rootfs, await realpath(dirname(path)), basename(path));
    await mkdir(dirname(target), { recursive: true });
    await execFileAsync("cp", ["-a", path, target]);
  }
  for (const applet of (await execText("/bin/busybox", ["--list-full"])).split("\n")) {
    const target = join(rootfs, "usr", applet.replace(/^usr\//, ""));
    if (!applet || existsSync(target)) continue;
    await mkdir(dirname(target), { recursive: true });
    await symlink("/usr/bin/busybox", target);
  }
  await execFileAsync("cp", [NODE_BINARY, join(rootfs, "usr/local/bin/node")]);
  if (caBundle.length > 0) {
    await mkdir(join(rootfs, dirname(HOST_CA_BUNDLE)), { recursive: true });
    await execFileAsync("cp", ["-L", HOST_CA_BUNDLE, join(rootfs, HOST_CA_BUNDLE)]);
  }
  await execFileAsync("cp", ["-a", npmDir, join(rootfs, "usr/local/lib/node_modules/npm")]);
  await symlink("../lib/node_modules/npm/bin/npm-cli.js", join(rootfs, "usr/local/bin/npm"));
  await symlink("../lib/node_modules/npm/bin/npx-cli.js", join(rootfs, "usr/local/bin/npx"));
  await writeFile(
    join(rootfs, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
  );
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n");
  const container = await buildah(["from", "--quiet", "scratch"], cache);
  try {
    await buildah(["copy", "--quiet", container, `${rootfs}/`, "/"], cache);
    await buildah(
      [
        "config",
        "--env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--env",
        `NODE_VERSION=${nodeVersion.replace(/^v/, "")}`,
        ...(caBundle.length > 0 ? ["--env", `NODE_EXTRA_CA_CERTS=${HOST_CA_BUNDLE}`] : []),
        "--cmd",
        "node",
        container,
      ],
      cache,
    );
    await buildah(["commit", "--quiet", container, image], cache);
  } finally {
    await buildah(["rm", container], cache).catch(() => undefined);
    await rm(rootfs, { recursive: true, force: true });
  }
  await writeFile(marker, `${image}\n`);
  return image;
}

/** The files of the build context that the .dockerignore lets in, for the cache key (git knows them). */
async function contextFiles(): Promise<string[]> {
  const listed = await execText("git", [
    "-C",
    REPO_ROOT,
    "ls-files",
    "--cached",
    "--others",
    "--exclude-standard",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.build.json",
    "src",
    "scripts/image",
    "crds",
    "Dockerfile",
    ".dockerignore",
  ]);
  return (
    listed
      .split("\n")
      // As .dockerignore: no tests, and not the local cluster's own code (src/dev/), which the CLI does not import.
      .filter((f) => f && !f.endsWith(".test.ts") && !f.startsWith("src/dev/"))
      .sort()
      .map((f) => join(REPO_ROOT, f))
      .filter((f) => existsSync(f))
  );
}

export type ImageTarget = "sidecar" | "manager";

export interface BuiltImage {
  target: ImageTarget;
  /** Full name with a tag that is the content key: fixed for given sources, so IfNotPresent always fits. */
  name: string;
  archive: string;
  /** Uncompressed size of the image's layers in bytes. */
  sizeBytes: number;
  /** "cache" or the build time in ms. */
  built: "cache" | number;
}

/** Builds the Dockerfile's sidecar and manager targets with buildah, each cached by the hash of its context. */
export async function buildProjectImages(
  targets: ImageTarget[],
  progress: (line: string) => void,
): Promise<BuiltImage[]> {
  const cache = imagesCacheDir();
  const base = await buildNodeBaseImage(progress);
  const key = await hashFiles(await contextFiles(), `images-1\n${base}`);
  const results: BuiltImage[] = [];
  for (const target of targets) {
    const name = `localhost/agentid/${target}:${key}`;
    const archive = join(cache, `${target}-${key}.tar`);
    let built: BuiltImage["built"] = "cache";
    if (!existsSync(archive)) {
      progress(
        `building ${name} from the Dockerfile with buildah (first build: a few minutes; npm ci runs in the build)`,
      );
      const started = Date.now();
      await buildahStreaming(
        [
          "bud",
          "--layers",
          "--pull-never",
          "--network",
          "host",
          "--isolation",
          "chroot",
          "--build-arg",
          `NODE_IMAGE=${base}`,
          "--target",
          target,
          "--tag",
          name,
          "--file",
          join(REPO_ROOT, "Dockerfile"),
          REPO_ROOT,
        ],
        progress,
        cache,
      );
      await exportImage(name, archive, cache);
      built = Date.now() - started;
      await pruneOldImages(
        cache,
        target,
        (oldKey) => buildah(["rmi", `localhost/agentid/${target}:${oldKey}`], cache),
        progress,
      );
    }
    const sizeBytes = await imageSize(archive);
    progress(
      `${name}: ${(sizeBytes / 1e6).toFixed(1)} MB${built === "cache" ? " (cached)" : ` built in ${(built / 1000).toFixed(0)} s`}`,
    );
    results.push({ target, name, archive, sizeBytes, built });
  }
  return results;
}

/** How many builds of each image the cache keeps (a few, so that runs of other checkouts beside this one keep theirs). */
export const IMAGES_KEPT = 3;

/**
 * Each change to the image's context is a new build (about 270 MB archived for the manager): without pruning the
 * cache grows by gigabytes a day. Removes all but the newest IMAGES_KEPT archives named `<prefix>-<key>.tar`, with
 * their tags in buildah's storage (shared layers stay for the next build).
 */
export async function pruneOldImages(
  cache: string,
  prefix: string,
  removeImage: (key: string) => Promise<unknown>,
  progress: (line: string) => void,
): Promise<string[]> {
  const pattern = new RegExp(`^${prefix}-([0-9a-f]{16})\\.tar$`);
  const archives: Array<{ file: string; key: string; mtimeMs: number }> = [];
  for (const file of await readdir(cache)) {
    const key = pattern.exec(file)?.[1];
    if (key)
      archives.push({ file: join(cache, file), key, mtimeMs: (await stat(join(cache, file))).mtimeMs });
  }
  const old = archives.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(IMAGES_KEPT);
  if (old.length === 0) return [];
  progress(`removing ${old.length} older ${prefix} image build(s) from ${cache}`);
  for (const { file, key } of old) {
    await rm(file, { force: true });
    // Already gone (removed by hand, another checkout's run) is fine.
    await removeImage(key).catch(() => undefined);
  }
  return old.map(({ key }) => key);
}

/** Sum of the layer sizes in a docker-archive (each layer is an uncompressed tar inside it). */
async function imageSize(archive: string): Promise<number> {
  const listing = await execText("tar", ["-tvf", archive]);
  let total = 0;
  for (const line of listing.split("\n")) {
    const [, , size, , , name] = line.split(/\s+/);
    if (name && !name.endsWith(".json") && name !== "manifest.json" && size) total += Number(size);
  }
  return total;
}

/**
 * A layer on top of an image that makes Node trust one more CA (NODE_EXTRA_CA_CERTS), as a company's base image
 * carries its private CA. The e2e tests put the emulator's CA into the sidecar image this way, because an injected
 * sidecar has no other way to trust a private authority host. Cached by the base image and the CA.
 */
export async function buildImageTrustingCa(
  image: string,
  caPem: string,
  progress: (line: string) => void,
): Promise<{ name: string; archive: string }> {
  const cache = imagesCacheDir();
  const key = createHash("sha256").update(`trust-1\n${image}\n${caPem}`).digest("hex").slice(0, 16);
  const name = `${image.replace(/:[^:/]+$/, "")}-trusting:${key}`;
  const archive = join(cache, `trusting-${key}.tar`);
  if (existsSync(archive)) return { name, archive };
  progress(`adding a CA to ${image} as ${name}`);
  const caFile = join(cache, `trusting-${key}.pem`);
  await writeFile(caFile, caPem);
  const container = await buildah(["from", "--quiet", "--pull-never", image], cache);
  try {
    await buildah(
      ["copy", "--quiet", "--chmod", "0444", container, caFile, "/etc/agentid/extra-ca.pem"],
      cache,
    );
    await buildah(["config", "--env", "NODE_EXTRA_CA_CERTS=/etc/agentid/extra-ca.pem", container], cache);
    await buildah(["commit", "--quiet", container, name], cache);
  } finally {
    await buildah(["rm", container], cache).catch(() => undefined);
    await rm(caFile, { force: true });
  }
  await exportImage(name, archive, cache);
  await pruneOldImages(
    cache,
    "trusting",
    (oldKey) => buildah(["rmi", `${image.replace(/:[^:/]+$/, "")}-trusting:${oldKey}`], cache),
    progress,
  );
  return { name, archive };
}
