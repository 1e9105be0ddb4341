import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { intendedTime } from "../../bench/fixed-rate.ts";
import {
  buildLoadGenerator,
  cpuPlan,
  LoadGenerator,
  parseSamples,
  pinnedCommand,
} from "../../bench/loadgen.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";

describe("where the bench runs its processes (pure)", () => {
  it("gives the server the last CPU and the generator the others, when it can", () => {
    expect(cpuPlan(2, true, true)).toMatchObject({ server: "1", generator: "0" });
    expect(cpuPlan(8, true, true)).toMatchObject({ server: "7", generator: "0-6" });
    for (const [cpus, taskset, wanted, why] of [
      [1, true, true, /one CPU/],
      [4, false, true, /no taskset/],
      [4, true, false, /--no-pin/],
    ] as const) {
      const plan = cpuPlan(cpus, taskset, wanted);
      expect(plan.server).toBeUndefined();
      expect(plan.generator).toBeUndefined();
      expect(plan.note).toMatch(why);
    }
  });

  it("runs a pinned command under taskset, an unpinned one as it is", () => {
    expect(pinnedCommand("node", ["a.ts"], "1")).toEqual({
      command: "taskset",
      args: ["-c", "1", "node", "a.ts"],
    });
    expect(pinnedCommand("node", ["a.ts"], undefined)).toEqual({ command: "node", args: ["a.ts"] });
  });

  it("refuses a phase answer that is not whole", () => {
    expect(() => parseSamples({ error: "fixed needs a positive rate" })).toThrow(
      /refused the phase: fixed needs/,
    );
    expect(() => parseSamples({ sent: [1], done: [2] })).toThrow(/without sent, done, status and cpuMicros/);
    expect(() => parseSamples({ sent: [1, 2], done: [2], status: [200], cpuMicros: 1 })).toThrow(
      /2 send times, 1 answer times and 1 statuses/,
    );
    expect(parseSamples({ sent: [1], done: [2], status: [200], cpuMicros: 5 })).toEqual({
      sent: [1],
      done: [2],
      status: [200],
      cpuMicros: 5,
    });
  });
});

// The generator is a Go program built by the bench; without Go there is nothing to run (.ci/run has Go).
const hasGo = spawnSync("go", ["version"]).status === 0;

describe.skipIf(!hasGo)("the load generator (real Go process, real HTTPS server)", () => {
  const CONNECTIONS = 3;
  let app: FastifyInstance;
  let generator: LoadGenerator;
  let base = "";
  let files = "";
  let inFlight = 0;
  let maxInFlight = 0;
  const peers = new Set<number>();
  const bodies = new Set<string>();

  beforeAll(async () => {
    const ca = await createCertificateAuthority("loadgen-test-ca");
    const leaf = await issueCertificate(ca, {
      commonName: "127.0.0.1",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    app = Fastify({ https: { cert: leaf.certPem, key: leaf.keyPem } });
    // Answers on the next turn of the event loop, so that the requests of all connections overlap.
    app.post("/ok", async (request) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      peers.add(request.socket.remotePort ?? 0);
      bodies.add(JSON.stringify(request.body));
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      return { ok: true };
    });
    // Answers once CONNECTIONS requests are waiting together: the generator must open that many connections.
    const waiting: Array<() => void> = [];
    app.post("/together", async (request) => {
      peers.add(request.socket.remotePort ?? 0);
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === CONNECTIONS) for (const release of waiting.splice(0)) release();
      });
      return { ok: true };
    });
    app.post("/teapot", async (_request, reply) => reply.code(418).send("no"));
    app.post("/reset", async (request) => {
      request.raw.socket.destroy();
    });
    // Never answers: the generator aborts it at its drain deadline.
    app.post("/hang", () => new Promise(() => {}));
    await app.listen({ host: "127.0.0.1", port: 0 });
    const address = app.server.address();
    base = `https://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    files = mkdtempSync(join(tmpdir(), "agentid-loadgen-test-"));
    writeFileSync(join(files, "ca.pem"), ca.certPem);
    writeFileSync(join(files, "body.json"), JSON.stringify({ kind: "AdmissionReview" }));
    const binary = await buildLoadGenerator(() => {});
    generator = LoadGenerator.start({
      binary,
      caFile: join(files, "ca.pem"),
      bodyFile: join(files, "body.json"),
      connections: CONNECTIONS,
    });
  }, 120_000);

  afterAll(async () => {
    await generator?.close();
    app?.server.closeAllConnections();
    await app?.close();
    if (files) rmSync(files, { recursive: true, force: true });
  });

  it("opens one connection per slot and sends the body as JSON", async () => {
    expect(await generator.open(`${base}/together`)).toEqual({ statuses: [200, 200, 200], connections: 3 });
    expect(peers.size).toBe(CONNECTIONS);
    // On /ok, answered at once, a request may reuse a connection another has just freed: open sends again
    // until every connection has carried one.
    expect(await generator.open(`${base}/ok`)).toEqual({ statuses: [200, 200, 200], connections: 3 });
    expect([...bodies]).toEqual([JSON.stringify({ kind: "AdmissionReview" })]);
  });

  it("keeps exactly `connections` requests in flight in a closed loop, and sends none after the duration", async () => {
    maxInFlight = 0;
    const s = await generator.closed(`${base}/ok`, 300, 5000);
    expect(s.status.length).toBeGreaterThan(CONNECTIONS);
    expect(new Set(s.status)).toEqual(new Set([200]));
    expect(maxInFlight).toBe(CONNECTIONS);
    expect(Math.max(...s.sent)).toBeLessThan(300_000);
    for (const [i, sent] of s.sent.entries()) expect(s.done[i]).toBeGreaterThanOrEqual(sent);
    // The connections opened above were kept: no new ones.
    expect(peers.size).toBe(CONNECTIONS);
    expect(s.cpuMicros).toBeGreaterThan(0);
  });

  it("reports non-2xx answers and keeps sending; a failed request ends its loop", async () => {
    const teapot = await generator.closed(`${base}/teapot`, 100, 5000);
    expect(teapot.status.length).toBeGreaterThan(CONNECTIONS);
    expect(new Set(teapot.status)).toEqual(new Set([418]));
    const reset = await generator.closed(`${base}/reset`, 100, 5000);
    expect(reset.status).toEqual([0, 0, 0]);
  });

  it("aborts what is unanswered at the drain deadline and says so", async () => {
    const closed = await generator.closed(`${base}/hang`, 50, 200);
    expect(closed.status).toEqual([-1, -1, -1]);
    const fixed = await generator.fixed(`${base}/hang`, 100, 50, 200);
    expect(fixed.status).toEqual([-1, -1, -1, -1, -1]);
  });

  it("sends a fixed load on schedule: request i no earlier than i / rate", async () => {
    const s = await generator.fixed(`${base}/ok`, 200, 250, 5000);
    expect(s.status).toEqual(Array(50).fill(200));
    // µs, truncated by Go: at most 1 µs under the exact intended time.
    for (const [i, sent] of s.sent.entries()) {
      expect(sent).toBeGreaterThanOrEqual(intendedTime(i, 200) * 1000 - 1);
      expect(s.done[i]).toBeGreaterThanOrEqual(sent);
    }
  });

  it("refuses a bad command with a clear error and keeps serving", async () => {
    await expect(generator.fixed(`${base}/ok`, 0, 100, 100)).rejects.toThrow(
      /refused the phase: fixed needs a positive rate/,
    );
    await expect(generator.closed("http://127.0.0.1:1/ok", 100, 100)).rejects.toThrow(/needs an https url/);
    expect(await generator.open(`${base}/ok`)).toEqual({ statuses: [200, 200, 200], connections: 3 });
  });
});
