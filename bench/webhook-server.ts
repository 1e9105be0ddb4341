import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import Fastify from "fastify";
import { Registry } from "prom-client";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../src/api/types.ts";
import { createLogger } from "../src/lib/log.ts";
import { createWebhookMetrics } from "../src/webhook/metrics.ts";
import { createReviewer } from "../src/webhook/review.ts";
import { startAdmissionServer } from "../src/webhook/server.ts";
import { DEFAULT_RESOURCES, sidecarSettings } from "../src/webhook/settings.ts";
import { createTargetCache } from "../src/webhook/target.ts";

/**
 * One server of bench/webhook, in a process of its own: `webhook` (the admission server with the whole
 * review: selection, blueprint and namespace checks, rendering, mutation; objects from the golden
 * fixtures, in memory as the informer cache holds them) or `echo` (a bare fastify HTTPS route that
 * answers the body it was sent). Reads the certificate from the environment, prints its port, and
 * answers any IPC message with its main thread's CPU time.
 */

const kind = process.argv[2];
// bench/webhook asks for this process's main-thread CPU time before and after each round (per-request
// CPU moves far less with the machine's load than requests per second do).
process.on("message", () => {
  const cpu = process.threadCpuUsage();
  process.send?.({ cpuMicros: cpu.user + cpu.system });
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
  // As the informer cache holds them: every object from the API server has a uid and a resourceVersion.
  const docs = parseAllDocuments(
    readFileSync(new URL("../test/fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
  ).map((d, i) => {
    const doc = d.toJSON();
    doc.metadata = { uid: randomUUID(), resourceVersion: String(1000 + i), ...doc.metadata };
    return doc;
  });
  const identities = new Map<string, AgentIdentity>(
    docs
      .filter((d) => d.kind === "AgentIdentity")
      .map((d) => [`${d.metadata.namespace}/${d.metadata.name}`, d]),
  );
  const blueprints = new Map<string, AgentIdentityBlueprint>(
    docs.filter((d) => d.kind === "AgentIdentityBlueprint").map((d) => [d.metadata.name, d]),
  );
  const namespaces = new Map<string, Record<string, string>>(
    docs.filter((d) => d.kind === "Namespace").map((d) => [d.metadata.name, d.metadata.labels ?? {}]),
  );
  const settings = sidecarSettings({
    image: "ghcr.io/agentid/sidecar:bench",
    native: true,
    defaultResources: DEFAULT_RESOURCES,
  });
  const resolveTarget = createTargetCache();
  const review = createReviewer({
    identities: {
      cached: (ns, name) => identities.get(`${ns}/${name}`),
      cachedList: (ns) => [...identities.values()].filter((i) => i.metadata.namespace === ns),
      read: async () => undefined,
      list: async () => [],
    },
    resolve: (identity, namespace) =>
      resolveTarget({
        identity,
        blueprint: blueprints.get(identity.spec.blueprintRef.name),
        namespace: { name: namespace, labels: namespaces.get(namespace) ?? {} },
        allowedAuthorityHosts: [],
      }),
    settings: () => settings,
    logger: createLogger({ name: "bench", level: "silent" }),
  });
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
