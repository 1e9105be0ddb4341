import { GCProfiler, getHeapStatistics } from "node:v8";
import { Registry } from "prom-client";
import { encodeReview, parseReview } from "../src/webhook/admission.ts";
import { createWebhookMetrics, perLabels } from "../src/webhook/metrics.ts";
import { checkBenchArgs, numberFlag } from "./args.ts";
import { fixtureReviewer } from "./webhook-fixtures.ts";
import { typicalReview } from "./webhook-review.ts";

/**
 * What one successful injection review costs in process, without HTTP or TLS: bench/webhook's typical
 * review, parsed (JSON.parse, as fastify does; `--parsed` parses it once, outside the loop), judged,
 * counted and timed in the metrics as the admission server does, and encoded; the answer's UTF-8 length
 * is taken as fastify takes it for Content-Length. Prints main-thread CPU and heap bytes allocated per
 * review (the used heap's growth plus what every GC in the loop freed). The reviewer is
 * bench/webhook-fixtures.ts's, so two commits answer byte for byte alike.
 *
 *   taskset -c 0 nice node --max-semi-space-size=2 --heap-growing-percent=30 bench/webhook-review-cost.ts
 */

checkBenchArgs({
  usage:
    "node [--max-semi-space-size=2 --heap-growing-percent=30] bench/webhook-review-cost.ts [--reviews 200000] [--warmup 20000] [--parsed]",
  values: ["reviews", "warmup"],
  switches: ["parsed"],
});
const reviews = numberFlag("reviews", 200_000);
const warmup = numberFlag("warmup", 20_000);
const parsedOnce = process.argv.includes("--parsed");

const review = fixtureReviewer();
// As server.ts observes them: prom-client children made once per outcome and reason.
const metrics = createWebhookMetrics(new Registry());
const reviewed = perLabels((outcome, reason) => metrics.reviews.labels(outcome, reason));
const timed = perLabels((outcome) => metrics.duration.labels(outcome));
const body = typicalReview();
const parsedBody: unknown = JSON.parse(body);

async function once(): Promise<number> {
  const started = performance.now();
  const parsed = parseReview(parsedOnce ? parsedBody : JSON.parse(body));
  if (!parsed.ok) throw new Error(parsed.message);
  const result = await review(parsed.request);
  if (result.outcome !== "injected") throw new Error(`expected an injection, got ${result.outcome}`);
  reviewed(result.outcome, result.reason).inc();
  timed(result.outcome).observe((performance.now() - started) / 1e3);
  return Buffer.byteLength(encodeReview(result.response));
}

for (let i = 0; i < warmup; i++) await once();
const profiler = new GCProfiler();
const usedBefore = getHeapStatistics().used_heap_size;
profiler.start();
const cpuBefore = process.threadCpuUsage();
let answerBytes = 0;
for (let i = 0; i < reviews; i++) answerBytes += await once();
const cpu = process.threadCpuUsage(cpuBefore);
const usedAfter = getHeapStatistics().used_heap_size;
let freed = 0;
let scavenges = 0;
for (const gc of profiler.stop()?.statistics ?? []) {
  freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  if (gc.gcType === "Scavenge") scavenges++;
}
process.stdout.write(
  `${JSON.stringify({
    reviews,
    parsed: parsedOnce ? "once, outside the loop" : "every review",
    cpuMicrosPerReview: +((cpu.user + cpu.system) / reviews).toFixed(2),
    bytesPerReview: Math.round((usedAfter - usedBefore + freed) / reviews),
    reviewsPerScavenge: scavenges > 0 ? Math.round(reviews / scavenges) : null,
    answerBytes: answerBytes / reviews,
  })}\n`,
);
