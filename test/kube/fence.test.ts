import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKubeClient } from "../../src/kube/client.ts";
import { FencedError, fenceClient } from "../../src/kube/fence.ts";
import type { KubeConfigLike } from "../../src/kube/kubeconfig.ts";

/** A real HTTP server that records every request and holds /slow until the client gives up. */
const seen: string[] = [];
const held: ServerResponse[] = [];
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  seen.push(`${req.method} ${req.url}`);
  if (req.url?.startsWith("/slow")) {
    held.push(res);
    return;
  }
  res.setHeader("content-type", "application/json");
  res.end("{}");
});
let kubeConfig: KubeConfigLike;

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  kubeConfig = { getCurrentCluster: () => ({ server: url }), applyToHTTPSOptions: async () => {} };
});
afterAll(async () => {
  for (const res of held) res.destroy();
  await new Promise((r) => server.close(r));
});

describe("fenceClient", () => {
  it("sends while the term lasts, aborts what is in flight when it ends, and sends nothing after", async () => {
    const client = createKubeClient(kubeConfig);
    let term = new AbortController();
    const fenced = fenceClient(client, () => term.signal);
    try {
      await fenced.get("/api/v1/namespaces/a/configmaps");
      const inFlight = fenced.replace("/slow/configmaps/x", { data: {} });
      await expect.poll(() => seen.includes("PUT /slow/configmaps/x")).toBe(true);
      term.abort();
      await expect(inFlight).rejects.toMatchObject({ name: "AbortError" });
      const before = seen.length;
      await expect(fenced.create("/api/v1/namespaces/a/configmaps", {})).rejects.toBeInstanceOf(FencedError);
      await expect(fenced.patch("/api/v1/namespaces/a/configmaps/x", "merge", {})).rejects.toBeInstanceOf(
        FencedError,
      );
      expect(seen.length).toBe(before); // nothing reached the server
      // The unfenced client is untouched; a new term sends again.
      await client.get("/api/v1/namespaces/b/configmaps");
      term = new AbortController();
      await fenced.get("/api/v1/namespaces/c/configmaps");
      expect(seen.slice(before)).toEqual([
        "GET /api/v1/namespaces/b/configmaps",
        "GET /api/v1/namespaces/c/configmaps",
      ]);
    } finally {
      await client.close();
    }
  });
});
