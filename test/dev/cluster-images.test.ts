import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IMAGES_KEPT, pruneOldImages } from "../../src/dev/cluster-images.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** An images cache holding `manager-<key>.tar` archives written one minute apart, oldest first. */
async function cacheWith(keys: string[], others: string[] = []): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "agentid-images-"));
  dirs.push(dir);
  const start = Date.now() / 1000 - 3600;
  for (const [i, key] of keys.entries()) {
    const file = join(dir, `manager-${key}.tar`);
    await writeFile(file, "");
    await utimes(file, start + i * 60, start + i * 60);
  }
  for (const name of others) await writeFile(join(dir, name), "");
  return dir;
}

const key = (n: number) => n.toString(16).padStart(16, "0");

describe("pruneOldImages", () => {
  it("keeps the newest builds of one image and removes the older archives and their tags", async () => {
    const keys = [1, 2, 3, 4, 5].map(key);
    const dir = await cacheWith(keys, [
      `sidecar-${key(1)}.tar`,
      `pause-${key(1)}.tar`,
      "manager-notakey.tar",
    ]);
    const removed: string[] = [];
    const lines: string[] = [];
    const result = await pruneOldImages(
      dir,
      "manager",
      async (k) => removed.push(k),
      (l) => lines.push(l),
    );
    expect(IMAGES_KEPT).toBe(3);
    expect(result.sort()).toEqual([key(1), key(2)]);
    expect(removed.sort()).toEqual([key(1), key(2)]);
    expect((await readdir(dir)).sort()).toEqual(
      [
        `manager-${key(3)}.tar`,
        `manager-${key(4)}.tar`,
        `manager-${key(5)}.tar`,
        "manager-notakey.tar",
        `pause-${key(1)}.tar`,
        `sidecar-${key(1)}.tar`,
      ].sort(),
    );
    expect(lines).toEqual([`removing 2 older manager image build(s) from ${dir}`]);
  });

  it("does nothing while there are no more builds than it keeps, and survives a tag already gone", async () => {
    const dir = await cacheWith([1, 2, 3].map(key));
    expect(
      await pruneOldImages(
        dir,
        "manager",
        async () => undefined,
        () => undefined,
      ),
    ).toEqual([]);
    expect(await readdir(dir)).toHaveLength(3);
    const more = await cacheWith([1, 2, 3, 4].map(key));
    const gone = await pruneOldImages(
      more,
      "manager",
      async () => {
        throw new Error("image not known");
      },
      () => undefined,
    );
    expect(gone).toEqual([key(1)]);
    expect(await readdir(more)).toHaveLength(3);
  });
});
