import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
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
export async function buildPauseImage(pauseBinary: string, progress: (line: string) => void): Promise<string> {
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
      ["config", "--entrypoint", '["/pause"]', "--user", "65535:65535", "--label", "org.opencontainers.image.title=agentid pause", container],
      cache,
    );
    await buildah(["commit", "--quiet", container, PAUSE_IMAGE], cache);
  } finally {
    await buildah(["rm", container], cache).catch(() => undefined);
  }
  await exportImage(PAUSE_IMAGE, archive, cache);
  return archive;
}
