import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type ClusterRecord, originalSysctls, otherLiveClusters } from "../../src/dev/cluster-system.ts";

/** A PID that is not running: beyond the kernel's default pid_max. */
const DEAD_PID = 4_194_305;

function record(pid: number, sysctls: Record<string, string>): ClusterRecord {
  return {
    pid,
    netns: `agentid-${pid}`,
    cgroupRoot: `/agentid-${pid}`,
    sysctls,
    varLibKubeletExisted: false,
  };
}

// Several clusters may run at once (test runs of different worktrees): the kernel settings a new one records
// must be the ones from before the first cluster changed them, and only the last one restores them.
describe("clusters running beside each other", () => {
  let root = "";
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("sees only the live ones, and takes the kernel settings from before the first", async () => {
    root = await mkdtemp(join(tmpdir(), "agentid-system-test-"));
    const write = async (name: string, r: ClusterRecord) => {
      await mkdir(join(root, name));
      await writeFile(join(root, name, "cluster.json"), JSON.stringify(r));
    };
    const self = join(root, "agentid-cluster-self00");
    await mkdir(self);
    expect(otherLiveClusters(self)).toEqual([]);

    await write("agentid-cluster-dead00", record(DEAD_PID, { "kernel/panic": "99" }));
    await write("agentid-cluster-live00", record(process.pid, { "kernel/panic": "0" }));
    await mkdir(join(root, "agentid-cluster-norec0"));
    await write("something-else", record(process.pid, { "kernel/panic": "7" }));

    expect(otherLiveClusters(self).map((r) => r.sysctls)).toEqual([{ "kernel/panic": "0" }]);
    expect(originalSysctls(self)).toEqual({ "kernel/panic": "0" });
    // Its own record does not count.
    expect(otherLiveClusters(join(root, "agentid-cluster-live00"))).toEqual([]);
  });
});
