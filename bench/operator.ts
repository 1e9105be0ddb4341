import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { promisify } from "node:util";
import { parse } from "yaml";
import { startControlPlane } from "../src/dev/controlplane.ts";
import { applyCrd, createNamespace, type RawObject } from "../src/dev/controlplane-helpers.ts";
import { createKubeClient } from "../src/kube/client.ts";
import { MANAGER_TUNING } from "../src/manager/v8-flags.ts";
import { identityPath } from "../src/operator/reconciler.ts";
import { checkBenchArgs, numberFlag } from "./args.ts";
import { startManagerProcess } from "./manager-process.ts";
import { setUpBlueprints, VERIFIED_SAMPLE } from "./operator-fixtures.ts";

/**
 * bench/operator: reconcile AgentIdentities to Ready against the local control plane with the manager
 * running as its own process in its production form (`node dist/cli.js manager`, the compiled
 * JavaScript, no NODE_OPTIONS, in-cluster credentials of the chart's ServiceAccount with exactly the
 * chart's RBAC: bench/manager-process.ts), and print the time until all are Ready, the manager's peak RSS,
 * its API requests per identity, its requests while idle, and whether each target is met. Two scenarios,
 * each on a fresh control plane and a fresh manager:
 *
 *   small  1,000 identities in one namespace     (targets: <= 60 s, <= 200 MB peak RSS, 0 requests idle)
 *   large  10,000 identities across 100 namespaces (targets: <= 120 s, <= 250 MB, 0 requests idle)
 *
 * Verification is on. Twenty identities of each run (one blueprint trusts at most 20 federated
 * credentials) use a workload-identity blueprint in Manual mode and are Ready only once the manager has
 * exchanged a real TokenRequest token at the Entra emulator; the others use a managed-identity blueprint,
 * Ready without a call to Entra (bench/operator-fixtures.ts). Entra requests count as requests too.
 *
 *   npm run bench:operator [-- --scenario small|large|both --idle-seconds 15 --no-build]
 *
 * It runs `npm run build` first (--no-build: use the dist/ there is). MANAGER_NODE_OPTIONS sets the
 * manager's NODE_OPTIONS for experiments (e.g. --heapsnapshot-signal=SIGUSR2).
 */

checkBenchArgs({
  usage: "npm run bench:operator [-- --scenario small|large|both --idle-seconds 15 --no-build]",
  values: ["scenario", "idle-seconds"],
  switches: ["no-build"],
});
const flag = numberFlag;

const IDLE_SECONDS = flag("idle-seconds", 15);
const HEALTH_PORT = 18000 + Math.floor(Math.random() * 2000);
const METRICS_PORT = HEALTH_PORT + 1;
const SCENARIO = (() => {
  const i = process.argv.indexOf("--scenario");
  const value = i >= 0 ? process.argv[i + 1] : "both";
  if (value !== "small" && value !== "large" && value !== "both")
    throw new Error("--scenario must be small, large or both");
  return value;
})();

interface Scenario {
  name: "small" | "large";
  count: number;
  namespaces: number;
  targets: { seconds: number; peakRssMb: number; idleRequests: number };
}
const SCENARIOS: Scenario[] = [
  { name: "small", count: 1000, namespaces: 1, targets: { seconds: 60, peakRssMb: 200, idleRequests: 0 } },
  {
    name: "large",
    count: 10_000,
    namespaces: 100,
    targets: { seconds: 120, peakRssMb: 250, idleRequests: 0 },
  },
];
const BUILD = !process.argv.includes("--no-build");
/** Production runs the manager without NODE_OPTIONS; set MANAGER_NODE_OPTIONS only to experiment. */
const NODE_OPTIONS = process.env.MANAGER_NODE_OPTIONS ?? "";
/** The node flags of the manager's start command (the image's); MANAGER_NODE_FLAGS replaces them to experiment. */
const NODE_FLAGS =
  process.env.MANAGER_NODE_FLAGS !== undefined
    ? process.env.MANAGER_NODE_FLAGS.split(/\s+/).filter(Boolean)
    : MANAGER_TUNING.flags;
const root = new URL("..", import.meta.url).pathname;
const log = (line: string) => process.stdout.write(`[bench:operator] ${line}\n`);

interface Scrape {
  ready: number;
  requests: Map<string, number>;
  heapUsedMb: number;
  rssMb: number;
}

async function scrape(): Promise<Scrape | undefined> {
  try {
    // A scrape that does not answer within 10 s counts as none (and says the manager is stuck).
    const text = await (
      await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`, { signal: AbortSignal.timeout(10_000) })
    ).text();
    const ready = Number(/agentid_identities\{condition="Ready",status="True"\} (\d+)/.exec(text)?.[1] ?? 0);
    const requests = new Map<string, number>();
    for (const m of text.matchAll(
      /agentid_kube_requests_total\{verb="([A-Z]+)",resource="([^"]+)",code="\d+"\} (\d+)/g,
    )) {
      const key = `${m[1]} ${m[2]}`;
      requests.set(key, (requests.get(key) ?? 0) + Number(m[3]));
    }
    const mb = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN) / 1048576;
    return {
      ready,
      requests,
      heapUsedMb: mb("agentid_manager_nodejs_heap_size_used_bytes"),
      rssMb: mb("agentid_manager_process_resident_memory_bytes"),
    };
  } catch {
    return undefined;
  }
}

function total(requests: Map<string, number>, filter: (key: string) => boolean = () => true): number {
  let n = 0;
  for (const [k, v] of requests) if (filter(k)) n += v;
  return n;
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** User + system CPU seconds the process has used (/proc/<pid>/stat fields 14 and 15, in clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const verdict = (ok: boolean) => (ok ? "met" : "NOT MET");

async function build(): Promise<string> {
  const cli = `${root}dist/cli.js`;
  if (BUILD) {
    log("npm run build (the manager runs from the compiled dist/, as in production)");
    try {
      await promisify(execFile)(`${root}node_modules/.bin/tsc`, ["-p", `${root}tsconfig.build.json`], {
        cwd: root,
      });
    } catch (error) {
      const out = String((error as { stdout?: string }).stdout ?? "")
        .split("\n")
        .slice(0, 10)
        .join("\n");
      throw new Error(`npm run build failed:\n${out}`);
    }
  }
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (or drop --no-build)`);
  return cli;
}

async function runScenario(cli: string, scenario: Scenario): Promise<boolean> {
  const { count: COUNT, targets: TARGETS } = scenario;
  const namespaces = Array.from({ length: scenario.namespaces }, (_, i) =>
    scenario.namespaces === 1 ? "bench" : `bench-${String(i).padStart(3, "0")}`,
  );
  log(`scenario ${scenario.name}: ${COUNT} identities across ${namespaces.length} namespace(s)`);
  log(`starting the local control plane (first run builds it; see npm run controlplane:build)`);
  const cp = await startControlPlane({ progress: (l) => log(l) });
  const kube = createKubeClient(cp.kubeConfig);
  for (const file of ["agentid.io_agentidentityblueprints.yaml", "agentid.io_agentidentities.yaml"]) {
    const crd = parse(readFileSync(new URL(`../crds/${file}`, import.meta.url), "utf8")) as RawObject;
    await applyCrd(cp.kubeConfig, crd);
  }
  const sampleNamespace = namespaces[0] ?? "bench";
  const fixture = await setUpBlueprints(kube, cp, sampleNamespace);
  for (const ns of namespaces) await createNamespace(cp.kubeConfig, ns, fixture.namespaceLabels);

  const { child: manager, mode } = await startManagerProcess(
    cp,
    cli,
    [
      ...(namespaces.length === 1 ? ["--namespace", namespaces[0] ?? ""] : []),
      ...fixture.managerArgs,
      "--health-host",
      "127.0.0.1",
      "--health-port",
      String(HEALTH_PORT),
      "--metrics-bind-address",
      `127.0.0.1:${METRICS_PORT}`,
      "--log-level",
      "warn",
      "--concurrency",
      "16",
    ],
    NODE_OPTIONS,
    NODE_FLAGS,
    // The verified sample's namespace lets the manager request tokens; the others need not.
    [sampleNamespace],
  );
  const pid = manager.pid ?? 0;
  try {
    while (!(await scrape())) await new Promise((r) => setTimeout(r, 200));
    const first = await scrape();
    const baseline = first?.requests ?? new Map();
    log(`manager started: RSS ${first?.rssMb.toFixed(0)} MB, heap used ${first?.heapUsedMb.toFixed(0)} MB`);
    log(
      `manager pid ${pid} up (${NODE_OPTIONS ? `NODE_OPTIONS=${NODE_OPTIONS}` : "no NODE_OPTIONS"}); creating ${COUNT} AgentIdentities`,
    );
    const entraBefore = await fixture.emulatorRequests();
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < COUNT) {
          const i = next++;
          // The verified sample first (in the first namespace), then the rest round-robin.
          const verified = i < VERIFIED_SAMPLE;
          const ns = verified ? sampleNamespace : (namespaces[i % namespaces.length] ?? sampleNamespace);
          await kube.create(identityPath(ns), fixture.identity(ns, i, verified).body);
        }
      }),
    );
    const created = performance.now();
    log(`created ${COUNT} in ${((created - started) / 1000).toFixed(1)} s; waiting until all are Ready`);
    let last = 0;
    for (;;) {
      const s = await scrape();
      if (s && s.ready !== last) {
        if (Math.floor(s.ready / 100) !== Math.floor(last / 100) || s.ready === COUNT)
          log(`${s.ready}/${COUNT} Ready`);
        last = s.ready;
      }
      if (last >= COUNT) break;
      // Twice a second: each scrape walks the identity cache for agentid_identities.
      await new Promise((r) => setTimeout(r, 500));
    }
    const allReady = performance.now();
    // CPU time does not depend on how busy the shared machine is, as the time to Ready does.
    const cpuToReady = cpuSeconds(pid);
    // Let the echoes of the last writes settle before measuring the idle window.
    await new Promise((r) => setTimeout(r, 2000));
    const busy = (await scrape())?.requests ?? new Map();
    const entraBusy = await fixture.emulatorRequests();
    log(`idle for ${IDLE_SECONDS} s`);
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const idleScrape = await scrape();
    const entraIdle = (await fixture.emulatorRequests()) - entraBusy;
    const idle = idleScrape?.requests ?? new Map();
    const work = new Map([...busy].map(([k, v]) => [k, v - (baseline.get(k) ?? 0)]));
    const idleDelta = new Map([...idle].map(([k, v]) => [k, v - (busy.get(k) ?? 0)]));
    const notLease = (k: string) => !k.endsWith(" leases");

    const seconds = (allReady - started) / 1000;
    const peak = peakRssMb(pid);
    const idleRequests = total(idleDelta, notLease) + entraIdle;
    const [load1, load5] = loadavg();

    console.log("");
    console.log(`scenario                       ${scenario.name}`);
    console.log(`identities                     ${COUNT} in ${namespaces.length} namespace(s)`);
    console.log(
      `manager                        node ${[...NODE_FLAGS, ""].join(" ")}dist/cli.js manager (${NODE_OPTIONS ? `NODE_OPTIONS=${NODE_OPTIONS}` : "no NODE_OPTIONS"})`,
    );
    console.log(
      `credentials                    ${mode === "in-cluster" ? "in-cluster ServiceAccount files, the chart's RBAC" : "--kubeconfig as admin (not root: no mount namespace); includes client-node's ~55 MB"}`,
    );
    console.log(`load average (1, 5 min)        ${load1?.toFixed(2)}, ${load5?.toFixed(2)} (2 cores)`);
    console.log(
      `time to all Ready              ${seconds.toFixed(1)} s (target <= ${TARGETS.seconds} s: ${verdict(seconds <= TARGETS.seconds)})`,
    );
    console.log(
      `manager CPU time to all Ready  ${cpuToReady.toFixed(1)} s (user + system, start-up included)`,
    );
    console.log(
      `manager peak RSS               ${peak.toFixed(0)} MB (target <= ${TARGETS.peakRssMb} MB: ${verdict(peak <= TARGETS.peakRssMb)})`,
    );
    console.log(
      `manager RSS / heap when idle   ${idleScrape?.rssMb.toFixed(0)} MB / ${idleScrape?.heapUsedMb.toFixed(0)} MB`,
    );
    console.log(
      `requests per identity          ${(total(work, notLease) / COUNT).toFixed(2)} (excluding leader-election renewals)`,
    );
    for (const [k, v] of [...work].filter(([k, v]) => notLease(k) && v > 0).sort())
      console.log(`  ${k.padEnd(36)}${v}`);
    console.log(
      `verified sample                ${VERIFIED_SAMPLE} identities proven by a token exchange at the Entra emulator: ${entraBusy - entraBefore} Entra requests (${((entraBusy - entraBefore) / VERIFIED_SAMPLE).toFixed(2)} per verified identity); the other ${COUNT - VERIFIED_SAMPLE} use a managed-identity blueprint (no Entra call)`,
    );
    console.log(
      `requests while idle (${IDLE_SECONDS} s)    ${idleRequests} to the API server and Entra (target 0: ${verdict(idleRequests === TARGETS.idleRequests)}), plus ${total(idleDelta, (k) => !notLease(k))} Lease renewals`,
    );
    console.log("");
    return seconds <= TARGETS.seconds && peak <= TARGETS.peakRssMb && idleRequests <= TARGETS.idleRequests;
  } finally {
    manager.kill("SIGTERM");
    await new Promise((r) => manager.once("exit", r));
    await kube.close();
    await fixture.close();
    await cp.stop();
  }
}

async function main(): Promise<void> {
  const cli = await build();
  let ok = true;
  for (const scenario of SCENARIOS)
    if (SCENARIO === "both" || SCENARIO === scenario.name) ok = (await runScenario(cli, scenario)) && ok;
  if (!ok) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`bench:operator failed: ${(error as Error).message}`);
  // Exit now: a failure while setting up leaves the control plane running (its exit hook stops it).
  process.exit(1);
});
