import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { createKubeClient } from "../../src/kube/client.ts";
import { createLeaderElector, type LeaderElector } from "../../src/kube/leader.ts";
import type { LeaseObject } from "../../src/kube/lease.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { apiServerAddress, createNamespace, testLogger, uniqueName, viaPort } from "./kube-support.ts";
import { startTcpProxy, type TcpProxy } from "./kube-tcp-proxy.ts";

/** Lease leader election between real candidates against kube-apiserver. */

const cp = connectControlPlane();
const client = createKubeClient(cp.kubeConfig);
const logger = testLogger("kube-leader-test");
const cleanup: Array<() => Promise<void> | void> = [];
/** Every candidate's callbacks in the order they happened, across candidates. */
let timeline: string[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  timeline = [];
});

interface Candidate {
  elector: LeaderElector;
  log: string[];
  signal?: AbortSignal;
}

function candidate(
  namespace: string,
  lease: string,
  identity: string,
  timings: { lease: number; renew: number; retry: number },
  kubeConfig = cp.kubeConfig,
  onStop?: () => Promise<void>,
): Candidate {
  const c: Candidate = {
    log: [],
    elector: createLeaderElector({
      kubeConfig,
      namespace,
      name: lease,
      identity,
      leaseDurationSeconds: timings.lease,
      renewDeadlineSeconds: timings.renew,
      retryPeriodSeconds: timings.retry,
      logger,
    }),
  };
  c.elector.run({
    onStartedLeading: (signal) => {
      c.signal = signal;
      c.log.push("started");
      timeline.push(`${identity} started`);
    },
    onStoppedLeading: () => {
      c.log.push("stopped");
      timeline.push(`${identity} stopped`);
      return onStop?.();
    },
    onNewLeader: (who) => c.log.push(`leader ${who}`),
  });
  cleanup.push(() => c.elector.stop());
  return c;
}

const leasePath = (ns: string, name: string) =>
  `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`;
// Short but with room: a leader starved of CPU for a second on a busy 2-core machine must not lose the lease.
const fast = { lease: 8, renew: 5, retry: 0.5 };

describe("leader election on a Lease", () => {
  it("elects exactly one of two candidates and records it in the Lease", async () => {
    const ns = await createNamespace(client, "leader-one");
    const a = candidate(ns, "lock", "a", fast);
    const b = candidate(ns, "lock", "b", fast);
    await expect.poll(() => a.elector.isLeader() || b.elector.isLeader(), { message: "a leader" }).toBe(true);
    const leader = a.elector.isLeader() ? a : b;
    const other = leader === a ? b : a;
    const name = leader === a ? "a" : "b";
    // Over several renew periods the roles stay put: never two leaders, never a change.
    for (let i = 0; i < 30; i++) {
      expect(leader.elector.isLeader()).toBe(true);
      expect(other.elector.isLeader()).toBe(false);
      await new Promise((r) => setTimeout(r, 100));
    }
    const lease = await client.get<LeaseObject>(leasePath(ns, "lock"));
    expect(lease.spec?.holderIdentity).toBe(name);
    expect(lease.spec?.leaseDurationSeconds).toBe(8);
    expect(lease.spec?.acquireTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(other.log).toContain(`leader ${name}`);
    expect(other.log).not.toContain("started");
  });

  it("hands over at once on a clean stop, long before the lease would expire", async () => {
    const ns = await createNamespace(client, "leader-release");
    // A 60 s lease: a takeover within the test's wait can only come from the release.
    const slow = { lease: 60, renew: 40, retry: 0.5 };
    let holderWhileStopping: string | null | undefined;
    // The leader's own shutdown work runs before the release: the Lease is still ours meanwhile.
    const a = candidate(ns, "lock", "a", slow, cp.kubeConfig, async () => {
      await new Promise((r) => setTimeout(r, 300));
      holderWhileStopping = (await client.get<LeaseObject>(leasePath(ns, "lock"))).spec?.holderIdentity;
    });
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    const b = candidate(ns, "lock", "b", slow);
    await expect.poll(() => b.log.includes("leader a"), { message: "b to see a" }).toBe(true);
    const before = await client.get<LeaseObject>(leasePath(ns, "lock"));
    await a.elector.stop();
    expect(a.log).toEqual(["leader a", "started", "stopped"]);
    expect(a.signal?.aborted).toBe(true);
    expect(holderWhileStopping).toBe("a");
    await expect.poll(() => b.elector.isLeader(), { message: "b to take over", timeout: 20_000 }).toBe(true);
    const after = await client.get<LeaseObject>(leasePath(ns, "lock"));
    expect(after.spec?.holderIdentity).toBe("b");
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
  });

  it("fails over after the leader process is killed without releasing", async () => {
    const ns = await createNamespace(client, "leader-kill");
    const lease = uniqueName("lock");
    const child: ChildProcess = spawn(
      process.execPath,
      [new URL("./kube-leader-child.ts", import.meta.url).pathname],
      {
        env: {
          ...process.env,
          KUBECONFIG_PATH: cp.kubeconfigPath,
          LEASE_NAMESPACE: ns,
          LEASE_NAME: lease,
          IDENTITY: "doomed",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    cleanup.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    let out = "";
    child.stdout?.on("data", (chunk) => {
      out += String(chunk);
    });
    let err = "";
    child.stderr?.on("data", (chunk) => {
      err += String(chunk);
    });
    // On failure the last value shows the child's stderr.
    await expect
      .poll(() => (out.includes("leading doomed") ? true : `stderr: ${err.slice(0, 500)}`), {
        message: "the child to lead",
      })
      .toBe(true);
    const b = candidate(ns, lease, "survivor", fast);
    await expect
      .poll(() => b.log.includes("leader doomed"), { message: "the survivor to see the child lead" })
      .toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    await expect.poll(() => b.elector.isLeader(), { message: "the survivor to take over" }).toBe(true);
    const after = await client.get<LeaseObject>(leasePath(ns, lease));
    expect(after.spec?.holderIdentity).toBe("survivor");
    expect(after.spec?.leaseTransitions).toBe(1);
    expect(out).not.toContain("stopped doomed");
  });

  it("steps down when it cannot renew, before another candidate takes over", async () => {
    const ns = await createNamespace(client, "leader-cut");
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy: TcpProxy = await startTcpProxy(host, port);
    cleanup.push(() => proxy.close());
    const a = candidate(ns, "lock", "a", fast, viaPort(cp.kubeConfig, proxy.port));
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    const b = candidate(ns, "lock", "b", fast);
    await expect.poll(() => b.log.includes("leader a"), { message: "b to see a" }).toBe(true);
    // a's API server now looks alive but never answers: a must give up leading on its own.
    proxy.blackhole();
    await expect.poll(() => b.elector.isLeader(), { message: "b to take over" }).toBe(true);
    expect(a.log).toContain("stopped");
    expect(a.signal?.aborted).toBe(true);
    // Never two leaders: a gave up before b took over.
    expect(timeline).toEqual(["a started", "a stopped", "b started"]);
  });

  it("after losing the lease, campaigns again only once the old term's drain has ended", async () => {
    const ns = await createNamespace(client, "leader-regain");
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy: TcpProxy = await startTcpProxy(host, port);
    cleanup.push(() => proxy.close());
    const short = { lease: 3, renew: 2, retry: 0.5 };
    let drain: () => void = () => {};
    const drained = new Promise<void>((resolve) => {
      drain = resolve;
    });
    // The only candidate: once it is back, the Lease still names it and it would win again at once.
    const a = candidate(ns, "lock", "a", short, viaPort(cp.kubeConfig, proxy.port), () => drained);
    // Runs before a's stop if the test fails early: the stop would wait for the drain.
    cleanup.push(() => drain());
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    const firstTerm = a.signal;
    proxy.blackhole();
    await expect.poll(() => a.log.at(-1), { message: "a to step down", timeout: 20_000 }).toBe("stopped");
    expect(firstTerm?.aborted).toBe(true);
    proxy.restore();
    // The API server answers again and nobody else holds the Lease, but the old term is still draining
    // (a slow outbound call): a stays out of the election. Several renew deadlines (the old bound of
    // the wait) and lease durations pass; a new term meanwhile would pass every fence beside the old one.
    const lease = async () => (await client.get<LeaseObject>(leasePath(ns, "lock"))).spec;
    const stepDownAt = Date.now();
    await expect
      .poll(async () => Date.now() - stepDownAt, { message: "time to pass", timeout: 20_000, interval: 500 })
      .toBeGreaterThan((short.lease + short.renew + 1) * 1000);
    expect(a.log.filter((e) => e === "started")).toHaveLength(1);
    expect(a.elector.isLeader()).toBe(false);
    expect((await lease())?.leaseTransitions ?? 0).toBe(0);

    drain();
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead again", timeout: 20_000 }).toBe(true);
    expect(a.signal).not.toBe(firstTerm);
    expect(a.signal?.aborted).toBe(false);
    expect(timeline).toEqual(["a started", "a stopped", "a started"]);
  });

  it("keeps renewing the Lease while its drain outlasts the lease duration, and releases it only after", async () => {
    const ns = await createNamespace(client, "leader-hold");
    // A short lease: the drain below outlasts it several times over (and the renew deadline, which
    // used to bound the wait for the drain before the release).
    const short = { lease: 3, renew: 2, retry: 0.5 };
    let drain: () => void = () => {};
    const drained = new Promise<void>((resolve) => {
      drain = resolve;
    });
    const a = candidate(ns, "lock", "a", short, cp.kubeConfig, () => drained);
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    const b = candidate(ns, "lock", "b", short);
    await expect.poll(() => b.log.includes("leader a"), { message: "b to see a" }).toBe(true);
    const renewTime = async () =>
      Date.parse((await client.get<LeaseObject>(leasePath(ns, "lock"))).spec?.renewTime ?? "");
    const stopping = a.elector.stop();
    const startedAt = await renewTime();
    await expect.poll(() => a.log.at(-1), { message: "a to stop leading" }).toBe("stopped");
    expect(a.elector.isLeader()).toBe(false);
    expect(a.signal?.aborted).toBe(true);
    // The drain has not ended: a renews on, more than a lease duration (and a renew deadline) later.
    await expect
      .poll(renewTime, { message: "a to keep renewing while draining", timeout: 20_000 })
      .toBeGreaterThan(startedAt + (short.lease + 1) * 1000);
    expect((await client.get<LeaseObject>(leasePath(ns, "lock"))).spec?.holderIdentity).toBe("a");
    expect(b.elector.isLeader()).toBe(false);
    expect(b.log).not.toContain("started");

    drain();
    await stopping;
    await expect.poll(() => b.elector.isLeader(), { message: "b to take over" }).toBe(true);
    expect(timeline).toEqual(["a started", "a stopped", "b started"]);
  });

  it("releases the Lease although a renewal it did not see the answer of changed its resourceVersion", async () => {
    const ns = await createNamespace(client, "leader-stale");
    // A long retry period: the Lease is not renewed by a itself during the test.
    const calm = { lease: 60, renew: 40, retry: 20 };
    const a = candidate(ns, "lock", "a", calm);
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    // What an interrupted renewal leaves behind: the Lease still names a, with a newer resourceVersion
    // than the one a last saw.
    const lease = await client.get<LeaseObject>(leasePath(ns, "lock"));
    const renewed = await client.replace<LeaseObject>(leasePath(ns, "lock"), {
      ...lease,
      spec: { ...lease.spec, renewTime: new Date().toISOString().replace("Z", "000Z") },
    });
    expect(renewed.metadata?.resourceVersion).not.toBe(lease.metadata?.resourceVersion);

    await a.elector.stop();
    const after = await client.get<LeaseObject>(leasePath(ns, "lock"));
    expect(after.spec?.holderIdentity ?? "").toBe("");
  });

  it("leaves a Lease someone else took over alone on release", async () => {
    const ns = await createNamespace(client, "leader-taken");
    const calm = { lease: 60, renew: 40, retry: 20 };
    const a = candidate(ns, "lock", "a", calm);
    await expect.poll(() => a.elector.isLeader(), { message: "a to lead" }).toBe(true);
    const lease = await client.get<LeaseObject>(leasePath(ns, "lock"));
    await client.replace<LeaseObject>(leasePath(ns, "lock"), {
      ...lease,
      spec: { ...lease.spec, holderIdentity: "intruder" },
    });

    await a.elector.stop();
    const after = await client.get<LeaseObject>(leasePath(ns, "lock"));
    expect(after.spec?.holderIdentity).toBe("intruder");
  });
});
