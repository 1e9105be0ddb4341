import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import { createLogger } from "../../src/lib/log.ts";
import { managerCommand, parseDuration } from "../../src/manager/command.ts";
import { spawnManager } from "../support/child.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { createNamespace } from "./kube-support.ts";
import { emulatorAdmin, onEmulator, startTestEmulator } from "./operator-fixture.ts";
import { BLUEPRINT, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

/**
 * SIGTERM while the leader has a call to Entra in flight: `agentid manager` as a real process, the real
 * emulator holding the verification's token request open (its `delay` fault, 12 s: longer than the
 * renew deadline, 10 s, which used to bound the wait for the drain before the Lease was released, and
 * shorter than the 15 s outbound deadline). The Lease must not be released while the call is in flight:
 * the next leader would otherwise start while the old one's call can still be carried out.
 *
 * "In flight" is read from events, not clocks: the emulator (in this process) logs the answer the
 * moment it sends it, and a watch on the Lease sees the release; the release is caused by the drain,
 * which waits for that answer, so the watch can only see it afterwards. Without the fix the release
 * came about 2 s before the answer.
 */

const DELAY_MS = 12_000;
const GRACE = String(managerCommand.options["shutdown-grace-period"]?.default);
const EXIT_LIMIT_MS = parseDuration(GRACE, "shutdown-grace-period") + 20_000;

const cp = useControlPlane({ namespacePrefix: "shutinflight" });
const kube = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
/** Set the moment the emulator answers the delayed verification (its log line is written then). */
let answered = false;
const emulatorLog = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split("\n").filter(Boolean)) {
      const l = JSON.parse(line) as { msg?: string; grant?: string };
      if (
        l.grant === "client_credentials+fmi_path" &&
        (l.msg === "token issued" || l.msg === "token request rejected")
      )
        answered = true;
    }
    done();
  },
});

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(
    cp,
    createLogger({ name: "emulator", level: "info", destination: emulatorLog }),
  );
});
afterAll(async () => {
  await emu?.close();
  await kube.close();
});

interface Lease {
  metadata?: { resourceVersion?: string };
  spec?: { holderIdentity?: string; renewTime?: string };
}

interface LogLine {
  msg?: string;
  signal?: string;
}

/** Every change of the Lease as the watch delivers it, with whether the emulator had answered by then. */
function watchLease(namespace: string) {
  const seen: Array<{ holder: string; renewTime: string; answered: boolean }> = [];
  const stop = new AbortController();
  const done = (async () => {
    const body = await kube.stream(
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      { watch: true, fieldSelector: "metadata.name=agentid-manager" },
      stop.signal,
    );
    let buffered = "";
    for await (const chunk of body) {
      buffered += String(chunk);
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const event = JSON.parse(buffered.slice(0, nl)) as { object?: Lease };
        buffered = buffered.slice(nl + 1);
        seen.push({
          holder: event.object?.spec?.holderIdentity ?? "",
          renewTime: event.object?.spec?.renewTime ?? "",
          answered,
        });
        nl = buffered.indexOf("\n");
      }
    }
  })().catch(() => {});
  onTestFinished(async () => {
    stop.abort();
    await done;
  });
  return seen;
}

function startManager(namespace: string, leaseNamespace: string, caFile: string) {
  const watched = spawnManager([
    "--kubeconfig",
    cp.kubeconfigPath,
    "--namespace",
    namespace,
    "--lease-namespace",
    leaseNamespace,
    "--ca-file",
    caFile,
    "--allowed-authority-hosts",
    emu.url,
    "--metrics-bind-address",
    "0",
  ]);
  return {
    child: watched.child,
    exited: watched.exited,
    lines: () => watched.jsonLines<LogLine>(),
    stderr: watched.stderr,
  };
}

async function verificationsStarted(): Promise<number> {
  const counters = await emulatorAdmin<{ byClient: Record<string, Record<string, number>> }>(
    emu,
    "GET",
    "/_emulator/counters",
  );
  return counters.byClient[BLUEPRINT]?.["client_credentials+fmi_path"] ?? 0;
}

describe("agentid manager stopped while a call to Entra is in flight", { timeout: 120_000 }, () => {
  it("holds the Lease until the call has ended, then releases it; a second SIGTERM does not interrupt", async () => {
    const ns = cp.namespace;
    const own = await createNamespace(kube, "shutinflight-system");
    const dir = mkdtempSync(join(tmpdir(), "agentid-shutdown-inflight-"));
    const caFile = join(dir, "emulator-ca.pem");
    writeFileSync(caFile, emu.caPem);
    await createBlueprint(kube, ns, onEmulator(emu));
    await emulatorAdmin(emu, "POST", "/_emulator/counters/reset");
    await emulatorAdmin(emu, "POST", "/_emulator/faults", {
      count: 1,
      kind: "delay",
      delayMs: DELAY_MS,
      clientId: BLUEPRINT,
      grant: "client_credentials+fmi_path",
    });
    const seen = watchLease(own);
    const manager = startManager(ns, own, caFile);
    await expect
      .poll(() => seen.some((s) => s.holder !== ""), { message: "the manager to lead", timeout: 60_000 })
      .toBe(true);
    await createIdentity(kube, ns, "slow");
    // The verification's token request has reached the emulator, which holds it for DELAY_MS.
    await expect
      .poll(verificationsStarted, { message: "the verification to reach Entra", timeout: 30_000 })
      .toBe(1);
    expect(answered).toBe(false);

    manager.child.kill("SIGTERM");
    await expect
      .poll(() => manager.lines().some((l) => l.msg === "stopped leading: draining leader-only components"))
      .toBe(true);
    // A second SIGTERM and a Ctrl-C while stopping: logged, not obeyed (Node's default would exit at once).
    manager.child.kill("SIGTERM");
    manager.child.kill("SIGINT");

    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<"alive">((resolve) => {
      timer = setTimeout(() => resolve("alive"), EXIT_LIMIT_MS);
    });
    const code = await Promise.race([manager.exited, limit]);
    clearTimeout(timer);
    expect(code, manager.stderr()).toBe(0);

    expect(answered).toBe(true);
    const messages = manager.lines().map((l) => l.msg);
    expect(messages).toContain("released the lease");
    expect(messages).toContain("stopped");
    // Both logged (two signals sent together may be handled in either order).
    const again = manager.lines().filter((l) => l.msg?.startsWith("already stopping"));
    expect(again.map((l) => l.signal).sort()).toEqual(["SIGINT", "SIGTERM"]);
    // The Lease was released, and only after the emulator had answered: never while the call was in flight.
    await expect.poll(() => seen.at(-1)?.holder, { message: "the release to be watched" }).toBe("");
    const release = seen.findIndex((s) => s.holder === "");
    expect(seen[release]?.answered).toBe(true);
    // Meanwhile the manager kept renewing it (each renewal a new renewTime, still naming the manager).
    const holder = seen.find((s) => s.holder !== "")?.holder;
    const renewalsWhileInFlight = seen
      .filter((s) => s.holder === holder && !s.answered)
      .map((s) => s.renewTime);
    expect(new Set(renewalsWhileInFlight).size).toBeGreaterThan(2);
  });
});
