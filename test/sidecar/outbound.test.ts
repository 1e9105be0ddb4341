import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { createOutbound, OutboundError } from "../../src/sidecar/outbound.ts";
import { type Hop, nextHop } from "../../src/sidecar/redirects.ts";

const SECRET = "Bearer secret-token-value";

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

interface TestServer {
  url: string;
  connections: number;
  seen: { method: string; url: string; headers: IncomingMessage["headers"]; body: string }[];
  close(): Promise<void>;
}

async function serve(
  handler: Handler,
  make: (l: (q: IncomingMessage, s: ServerResponse) => void) => Server,
  scheme: "http" | "https" = "http",
): Promise<TestServer> {
  const server = make((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      state.seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      handler(req, res, body);
    });
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    state.connections++;
    sockets.add(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const state: TestServer = {
    url: `${scheme}://127.0.0.1:${port}`,
    connections: 0,
    seen: [],
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  return state;
}

const httpServer = (handler: Handler) => serve(handler, (l) => createServer(l));

/** Waits for a rejection and returns it (fails the test if the promise resolves). */
async function failure(promise: Promise<unknown>): Promise<OutboundError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof OutboundError)) throw new Error(`expected an OutboundError, got ${String(error)}`);
  expect(error.message).not.toContain("secret-token-value");
  expect(error.message).not.toContain("request-body");
  return error;
}

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function client(options: Parameters<typeof createOutbound>[0] = {}) {
  const c = createOutbound(options);
  closers.push(() => c.close());
  return c;
}

async function server(handler: Handler): Promise<TestServer> {
  const s = await httpServer(handler);
  closers.push(() => s.close());
  return s;
}

describe("outbound client over node:http", () => {
  it("sends method, headers and body, and reuses one kept-alive connection", async () => {
    const s = await server((_req, res, body) => {
      res.writeHead(201, { "content-type": "text/plain", "x-multi": ["a", "b"] });
      res.end(`got ${body}`);
    });
    const c = client();
    const init = {
      method: "post",
      headers: { Authorization: SECRET, "Content-Type": "text/plain" },
      body: "request-body",
      timeoutMs: 5000,
    };
    const first = await c.request(`${s.url}/a?x=1`, init);
    const second = await c.request(`${s.url}/b`, init);
    expect([first.status, first.body.toString()]).toEqual([201, "got request-body"]);
    expect(first.headers["x-multi"]).toBe("a, b");
    expect(second.status).toBe(201);
    expect(s.seen[0]).toMatchObject({ method: "POST", url: "/a?x=1", body: "request-body" });
    expect(s.seen[0]?.headers).toMatchObject({
      authorization: SECRET,
      "content-type": "text/plain",
      "content-length": "12",
    });
    expect(s.connections).toBe(1);
  });

  it("times out when no answer comes, and when the body stalls after the headers", async () => {
    const s = await server((req, res) => {
      if (req.url === "/stall") {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial");
      }
      // /silent: never answers
    });
    const c = client();
    const init = { method: "GET", headers: { authorization: SECRET }, timeoutMs: 300 };
    const silent = await failure(c.request(`${s.url}/silent`, init));
    expect([silent.kind, silent.host]).toEqual(["timeout", new URL(s.url).host]);
    expect(silent.message).toBe(`${new URL(s.url).host} did not answer in time`);
    expect((await failure(c.request(`${s.url}/stall`, init))).kind).toBe("timeout");
  });

  it("stops reading past maxResponseBytes and reports an answer that broke off", async () => {
    const s = await server((req, res) => {
      if (req.url === "/big") {
        res.writeHead(200);
        res.end(Buffer.alloc(64 * 1024, 1));
      } else {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial", () => res.socket?.destroy());
      }
    });
    const c = client();
    const big = await failure(
      c.request(`${s.url}/big`, { method: "GET", headers: {}, timeoutMs: 5000, maxResponseBytes: 1000 }),
    );
    expect(big.kind).toBe("too-large");
    const broken = await failure(c.request(`${s.url}/cut`, { method: "GET", headers: {}, timeoutMs: 5000 }));
    expect(broken.kind).toBe("broken");
  });

  it("reports an unreachable host with Node's error code, and refuses calls once closed", async () => {
    const c = createOutbound();
    const refused = await failure(
      c.request("http://127.0.0.1:1/", {
        method: "GET",
        headers: { authorization: SECRET },
        timeoutMs: 5000,
      }),
    );
    expect([refused.kind, refused.code]).toEqual(["unreachable", "ECONNREFUSED"]);
    c.close();
    const s = await server((_req, res) => res.end("ok"));
    expect((await failure(c.request(s.url, { method: "GET", headers: {}, timeoutMs: 5000 }))).kind).toBe(
      "unreachable",
    );
  });

  it("sends an idempotent request again when a reused kept-alive socket turns out closed, others not", async () => {
    const served = new WeakMap<object, number>();
    // The second request on any connection finds it closed: the race a kept-alive pool has to handle.
    const s = await server((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) req.socket.destroy();
      else res.end("fresh");
    });
    const c = client();
    const get = { method: "GET", headers: {}, timeoutMs: 5000 };
    await c.request(s.url, get);
    expect((await c.request(s.url, get)).body.toString()).toBe("fresh");
    const post = { method: "POST", headers: {}, body: "request-body", timeoutMs: 5000 };
    expect((await c.request(s.url, { ...post, idempotent: true })).body.toString()).toBe("fresh");
    expect((await failure(c.request(s.url, post))).kind).toBe("unreachable");
    expect(s.seen.map((q) => q.method)).toEqual(["GET", "GET", "GET", "POST", "POST", "POST"]);
  });

  it("returns a redirect as is unless asked to follow, and follows at most maxRedirects", async () => {
    const s = await server((req, res) => {
      const n = Number(req.url?.slice(1));
      res.writeHead(302, { location: `/${n + 1}` });
      res.end();
    });
    const c = client();
    const once = await c.request(`${s.url}/0`, { method: "GET", headers: {}, timeoutMs: 5000 });
    expect([once.status, once.headers.location]).toEqual([302, "/1"]);
    const many = await c.request(`${s.url}/0`, {
      method: "GET",
      headers: {},
      timeoutMs: 5000,
      maxRedirects: 5,
    });
    expect([many.status, many.headers.location]).toEqual([302, "/6"]);
    expect(s.seen.map((q) => q.url)).toEqual(["/0", "/0", "/1", "/2", "/3", "/4", "/5"]);
  });
});

describe("outbound client over node:https", () => {
  let httpsUrl: string;
  let caPem: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const ca = await createCertificateAuthority("outbound-test-ca");
    caPem = ca.certPem;
    const leaf = await issueCertificate(ca, {
      commonName: "api",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const s = await serve(
      (_req, res) => res.end("secure"),
      (l) => createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, l),
      "https",
    );
    httpsUrl = s.url;
    close = s.close;
  });
  afterAll(() => close?.());

  it("trusts the extra CA for its own agent only, never process-wide", async () => {
    const trusting = client({ extraCaPem: caPem });
    const ok = await trusting.request(httpsUrl, { method: "GET", headers: {}, timeoutMs: 5000 });
    expect(ok.body.toString()).toBe("secure");
    const plain = client();
    const refused = await failure(plain.request(httpsUrl, { method: "GET", headers: {}, timeoutMs: 5000 }));
    expect(refused.kind).toBe("unreachable");
    expect(refused.code).toMatch(/CERT|SIGNATURE|ISSUER/);
  });
});

describe("nextHop (redirect decisions)", () => {
  const from: Hop = {
    url: new URL("https://api.example/a"),
    method: "POST",
    headers: { authorization: SECRET, "content-type": "text/plain", "content-length": "5", "x-keep": "1" },
    body: "hello",
  };

  it("is not a redirect without a redirect status or a usable location", () => {
    expect(nextHop(from, 200, "/b")).toBeUndefined();
    expect(nextHop(from, 304, "/b")).toBeUndefined();
    expect(nextHop(from, 302, undefined)).toBeUndefined();
    expect(nextHop(from, 302, "ftp://api.example/b")).toBeUndefined();
    expect(nextHop(from, 302, "http://[bad")).toBeUndefined();
  });

  it.each([
    [301, "GET", undefined],
    [302, "GET", undefined],
    [303, "GET", undefined],
    [307, "POST", "hello"],
    [308, "POST", "hello"],
  ])("%i after a POST on the same origin → %s, token kept", (status, method, body) => {
    const next = nextHop(from, status, "/b");
    expect(next?.url.href).toBe("https://api.example/b");
    expect(next?.method).toBe(method);
    expect(next?.body).toBe(body);
    expect(next?.headers.authorization).toBe(SECRET);
    expect(next?.headers["x-keep"]).toBe("1");
    expect("content-type" in (next?.headers ?? {})).toBe(body !== undefined);
  });

  it("keeps a PUT through 301/302 but turns it into GET on 303", () => {
    const put = { ...from, method: "PUT" };
    expect(nextHop(put, 302, "/b")?.method).toBe("PUT");
    expect(nextHop(put, 303, "/b")?.method).toBe("GET");
  });

  it.each([
    ["another host", "https://other.example/b"],
    ["another port", "https://api.example:8443/b"],
    ["another scheme", "http://api.example/b"],
  ])("drops the credentials for %s", (_what, location) => {
    const next = nextHop({ ...from, headers: { ...from.headers, cookie: "c=1" } }, 307, location);
    expect(next?.headers.authorization).toBeUndefined();
    expect(next?.headers.cookie).toBeUndefined();
    expect(next?.body).toBe("hello");
    expect(next?.headers["x-keep"]).toBe("1");
  });
});
