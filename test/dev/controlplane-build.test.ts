import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ControlPlaneBuildError, ensureControlPlaneBinaries } from "../../src/dev/controlplane-build.ts";

/**
 * How the build command fails when Go is missing or too old. A one-line shell script stands in for an
 * old `go` on PATH: only its `go env GOVERSION` answer matters, and the build must stop before any build.
 */

const scratch: string[] = [];
afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "agentid-cp-build-test-"));
  scratch.push(dir);
  return dir;
}

const quiet = () => {};

describe("ensureControlPlaneBinaries without a usable Go", () => {
  it("says Go is missing and names the KUBEBUILDER_ASSETS way out", async () => {
    const [emptyPath, cacheDir] = await Promise.all([tempDir(), tempDir()]);
    const error = await ensureControlPlaneBinaries({
      env: { PATH: emptyPath },
      cacheDir,
      progress: quiet,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ControlPlaneBuildError);
    expect((error as Error).message).toMatch(/Go is not installed \(no 'go' on PATH\)/);
    expect((error as Error).message).toMatch(/Install Go >= 1\.24\.0/);
    expect((error as Error).message).toContain("KUBEBUILDER_ASSETS");
  });

  it("refuses a Go older than the wrapper modules need, and does not try to download a newer one", async () => {
    const [fakeBin, cacheDir] = await Promise.all([tempDir(), tempDir()]);
    const go = join(fakeBin, "go");
    await writeFile(
      go,
      '#!/bin/sh\n[ "$GOTOOLCHAIN" = local ] || { echo "GOTOOLCHAIN not local" >&2; exit 9; }\necho go1.23.4\n',
    );
    await chmod(go, 0o755);
    const error = await ensureControlPlaneBinaries({
      env: { PATH: `${fakeBin}:/usr/bin:/bin` },
      cacheDir,
      progress: quiet,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ControlPlaneBuildError);
    expect((error as Error).message).toMatch(
      /go1\.23\.4 is too old to build etcd v3\.6\.\d+: Go >= 1\.24\.0/,
    );
  });
});
