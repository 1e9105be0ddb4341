import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { OutboundFencedError, outboundDispatcher } from "../../src/operator/https.ts";

/**
 * The dispatcher of every call to Entra and Graph, against real HTTP servers on loopback: a total
 * deadline per call (undici's own timeouts are per phase), and the fence that refuses calls once the
 * leadership term has ended while letting calls already in flight finish.
 */

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("outbound calls to Entra and Graph", () => {
  it("end at the total deadline when the answer trickles in (each pause shorter than the idle timeout)", async () => {
    let chunks = 0;
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("[");
      // One byte every 20 ms, forever: neither the headers timeout nor the body (idle) timeout fires.
      const tick = setInterval(() => {
        chunks += 1;
        res.write(" ");
      }, 20);
      res.on("close", () => clearInterval(tick));
    });
    const dispatcher = outboundDispatcher([], { timeoutMs: 400 });
    try {
      const answer = request(url, { dispatcher }).then((r) => r.body.text());
      await expect(answer).rejects.toThrow(`no complete answer from ${url} within 400 ms`);
      // The body did arrive in pieces: it was the total deadline, not an idle timeout, that ended it.
      expect(chunks).toBeGreaterThan(2);
    } finally {
      await dispatcher.destroy();
    }
  });

  it("answers normally when the answer is complete", async () => {
    const url = await serve((_req, res) => res.end('{"ok":true}'));
    const dispatcher = outboundDispatcher([], { timeoutMs: 400 });
    try {
      const response = await request(url, { dispatcher });
      expect(await response.body.json()).toEqual({ ok: true });
    } finally {
      await dispatcher.close();
    }
  });

  it("refuses a call once the term has ended, sending nothing", async () => {
    let received = 0;
    const url = await serve((_req, res) => {
      received += 1;
      res.end("{}");
    });
    const term = new AbortController();
    const dispatcher = outboundDispatcher([], { fence: () => term.signal });
    try {
      await (await request(url, { dispatcher })).body.text();
      expect(received).toBe(1);
      term.abort();
      const refused = request(url, { method: "POST", body: "{}", dispatcher });
      await expect(refused).rejects.toThrow(OutboundFencedError);
      await expect(refused).rejects.toThrow(`not sent to ${url}: this replica no longer leads`);
      expect(received).toBe(1);
    } finally {
      await dispatcher.close();
    }
  });

  it("lets a call in flight when the term ends finish (an aborted write may still be carried out)", async () => {
    let answer: () => void = () => {};
    let arrived: () => void = () => {};
    const inFlight = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const url = await serve((_req, res) => {
      answer = () => res.end('{"written":true}');
      arrived();
    });
    const term = new AbortController();
    const dispatcher = outboundDispatcher([], { fence: () => term.signal });
    try {
      const call = request(url, { method: "POST", body: "{}", dispatcher });
      await inFlight;
      term.abort();
      answer();
      expect(await (await call).body.json()).toEqual({ written: true });
    } finally {
      await dispatcher.close();
    }
  });
});
