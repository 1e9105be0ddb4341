import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import Fastify from "fastify";
import { Registry } from "prom-client";
import { createLogger } from "../src/lib/log.ts";
import { createWebhookMetrics } from "../src/webhook/metrics.ts";
import { startAdmissionServer } from "../src/webhook/server.ts";
import { fixtureReviewer } from "./webhook-fixtures.ts";

/**
 * One server of bench/webhook, in a process of its own: `webhook` (the admission server with the whole
 * review of bench/webhook-fixtures.ts, answered from the caches as in a running cluster) or `echo` (a
 * bare fastify HTTPS route that answers the body it was sent). Reads the certificate from the
 * environment, prints its port, and answers any IPC message with its main thread's CPU time and its GC
 * pauses so far.
 */

const kind = process.argv[2];
// bench/webhook asks for this process's main-thread CPU time before and after each round (per-request
// CPU moves far less with the machine's load than requests per second do), and for its GC pauses: they
// are where a server's latency tail comes from when nothing else takes its core.
const gc = { pauses: 0, totalMs: 0, full: 0, longestMs: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.pauses++;
    gc.totalMs += entry.duration;
    gc.longestMs = Math.max(gc.longestMs, entry.duration);
    const { detail } = entry as PerformanceEntry & { detail?: { kind?: number } };
    if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.full++;
  }
}).observe({ entryTypes: ["gc"] });
process.on("message", () => {
  const cpu = process.threadCpuUsage();
  process.send?.({ cpuMicros: cpu.user + cpu.system, gc: { ...gc } });
  // The longest pause is of the time since the last question (the others are totals).
  gc.longestMs = 0;
});
const cert = process.env.BENCH_CERT ?? "";
const key = process.env.BENCH_KEY ?? "";

if (kind === "echo") {
  const app = Fastify({ https: { cert, key }, logger: false, bodyLimit: 8 * 1024 * 1024 });
  app.post("/mutate-v1-pod", async (request) => request.body);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
} else if (kind === "webhook") {
  const review = fixtureReviewer();
  const server = await startAdmissionServer({
    host: "127.0.0.1",
    port: 0,
    review,
    logger: createLogger({ name: "bench", level: "silent" }),
    metrics: createWebhookMetrics(new Registry()),
  });
  server.setCertificate(cert, key);
  process.stdout.write(`${server.port()}\n`);
} else {
  throw new Error("usage: webhook-server.ts webhook|echo");
}
