import { describe, expect, it } from "vitest";
import { ApiError, ClientClosedError, createKubeClient, type RequestInfo } from "../../src/kube/client.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { apiServerAddress, type ConfigMap, configMap, createNamespace, viaPort } from "./kube-support.ts";
import { startTcpProxy } from "./kube-tcp-proxy.ts";

/** The raw JSON client against kube-apiserver: verbs, patch types, typed errors, request observation. */

const cp = connectControlPlane();

async function errorOf(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected the request to fail");
}

describe("kube client", () => {
  it("creates, reads, patches three ways, replaces and deletes, keeping unknown fields intact", async () => {
    const requests: RequestInfo[] = [];
    const client = createKubeClient(cp.kubeConfig, { onRequest: (r) => requests.push(r) });
    try {
      const ns = await createNamespace(client, "client");
      const path = `/api/v1/namespaces/${ns}/configmaps`;
      const created = await client.create<ConfigMap>(path, configMap(ns, "c", { a: "1" }));
      expect(created.metadata.uid).toBeTruthy();
      await client.patch(`${path}/c`, "merge", { data: { b: "2" } });
      await client.patch(`${path}/c`, "json", [
        { op: "add", path: "/metadata/labels", value: { "agentid.io/identity": "x" } },
        { op: "replace", path: "/data/a", value: "one" },
      ]);
      const applied = await client.patch<ConfigMap>(
        `${path}/c`,
        "apply",
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c", namespace: ns }, data: { c: "3" } },
        { fieldManager: "kube-client-test", force: true },
      );
      expect(applied.data).toEqual({ a: "one", b: "2", c: "3" });
      expect(applied.metadata.labels).toEqual({ "agentid.io/identity": "x" });
      // A field the typed models do not know survives a read-modify-write through this client.
      const raw = await client.get<ConfigMap & Record<string, unknown>>(`${path}/c`);
      expect(raw.metadata).toHaveProperty("managedFields");
      const replaced = await client.replace<ConfigMap>(`${path}/c`, { ...raw, data: { only: "this" } });
      expect(replaced.data).toEqual({ only: "this" });
      await client.delete(`${path}/c`);
      expect(await client.getOptional(`${path}/c`)).toBeUndefined();
      expect(requests.map((r) => `${r.method} ${r.status}`)).toEqual([
        "POST 201",
        "POST 201",
        "PATCH 200",
        "PATCH 200",
        "PATCH 200",
        "GET 200",
        "PUT 200",
        "DELETE 200",
        "GET 404",
      ]);
    } finally {
      await client.close();
    }
  });

  it("answers typed errors: NotFound, AlreadyExists, Conflict on a stale resourceVersion, Invalid", async () => {
    const client = createKubeClient(cp.kubeConfig);
    try {
      const ns = await createNamespace(client, "client-errors");
      const path = `/api/v1/namespaces/${ns}/configmaps`;
      const missing = await errorOf(client.get(`${path}/nope`));
      expect([missing.status, missing.reason]).toEqual([404, "NotFound"]);
      expect(missing.message).toContain('"nope" not found');

      const first = await client.create<ConfigMap>(path, configMap(ns, "c", { a: "1" }));
      const exists = await errorOf(client.create(path, configMap(ns, "c", { a: "1" })));
      expect([exists.status, exists.reason]).toEqual([409, "AlreadyExists"]);

      await client.patch(`${path}/c`, "merge", { data: { a: "2" } });
      const stale = await errorOf(client.replace(`${path}/c`, { ...first, data: { a: "3" } }));
      expect([stale.status, stale.reason]).toEqual([409, "Conflict"]);

      const invalid = await errorOf(client.create(path, configMap(ns, "Not_A_Name", {})));
      expect([invalid.status, invalid.reason]).toEqual([422, "Invalid"]);
      expect(invalid.message).toContain("Not_A_Name");
      expect(invalid.details).toMatchObject({
        causes: [expect.objectContaining({ field: "metadata.name" })],
      });

      const badPatch = await errorOf(
        client.patch(`${path}/c`, "json", [{ op: "test", path: "/data/a", value: "no" }]),
      );
      expect(badPatch.status).toBe(422);
    } finally {
      await client.close();
    }
  });

  it("reports a refused connection as an error naming the cause, without a status", async () => {
    // Port 1 on loopback: nothing listens there.
    const client = createKubeClient(viaPort(cp.kubeConfig, 1));
    try {
      await expect(client.get("/api/v1/namespaces")).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await client.close();
    }
  });

  it("close with forceAfterMs abandons a request the API server never answers", async () => {
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const proxy = await startTcpProxy(host, port);
    // A request timeout far beyond the test's: only the forced close can end the request in time.
    const client = createKubeClient(viaPort(cp.kubeConfig, proxy.port), { requestTimeoutMs: 600_000 });
    try {
      await client.get("/api/v1/namespaces/default");
      proxy.blackhole();
      const pending = client.get("/api/v1/namespaces/default");
      const outcome = pending.then(
        () => "answered",
        (error: Error) => error.message,
      );
      // Sent, but the silent relay carries no answer: a plain close() would wait for the request timeout.
      await expect.poll(() => proxy.open()).toBeGreaterThan(0);
      await client.close({ forceAfterMs: 50 });
      expect(await outcome).not.toBe("answered");
    } finally {
      await proxy.close();
    }
  });

  it("is final once closed: later requests and watches reject without reaching the API server", async () => {
    const seen: RequestInfo[] = [];
    const client = createKubeClient(cp.kubeConfig, { onRequest: (info) => seen.push(info) });
    await client.get("/api/v1/namespaces/default");
    expect(seen).toHaveLength(1);
    await client.close();

    await expect(client.get("/api/v1/namespaces/default")).rejects.toThrow(ClientClosedError);
    await expect(client.create("/api/v1/namespaces", { metadata: { name: "never" } })).rejects.toThrow(
      /POST \/api\/v1\/namespaces: the Kubernetes API client is closed; the request was not sent/,
    );
    await expect(
      client.stream("/api/v1/namespaces", { watch: true }, new AbortController().signal),
    ).rejects.toThrow(ClientClosedError);
    // No new connection pool was opened: nothing reached (or even left for) the API server.
    expect(seen).toHaveLength(1);
    // Closing again is harmless.
    await client.close();
  });
});
