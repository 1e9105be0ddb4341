import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A real TCP relay between a client and the API server, to inject the network faults that real clusters
 * produce: connections reset mid-stream (`dropAll`) and connections that silently stop carrying bytes
 * without closing (`freeze`, what a dead NAT entry or a half-open connection looks like). TLS passes
 * through untouched, so the client still verifies the API server's certificate.
 */
export interface TcpProxy {
  port: number;
  /** Destroys every open connection (both sides); answers how many were open. */
  dropAll(): number;
  /** Stops moving bytes on every open connection without closing it; new connections are not affected. */
  freeze(): number;
  /**
   * Closes the server side of every frozen connection while the client side stays silent, like a peer
   * that went away without the client hearing of it (lets a server shut down without waiting for it).
   */
  severUpstream(): number;
  /** Freezes every open connection and every later one: the server looks alive but never answers. */
  blackhole(): void;
  /** Ends a blackhole: drops every (frozen) connection, like a network that comes back; new ones pass again. */
  restore(): void;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections open right now. */
  open(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>();
  let accepted = 0;
  let blackholed = false;
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect({ host: targetHost, port: targetPort });
    const pair = { client, upstream, frozen: blackholed };
    pairs.add(pair);
    if (blackholed) client.pause();
    // Manual forwarding instead of pipe(): pipe() would resume a paused socket on 'drain'.
    const forward = (from: Socket, to: Socket) => {
      from.on("data", (chunk) => {
        if (!pair.frozen && !to.destroyed) to.write(chunk);
      });
      // A frozen connection tells the other side nothing: that is the point of freezing it.
      from.on("end", () => {
        if (!pair.frozen) to.end();
      });
      from.on("error", () => {
        if (!pair.frozen) to.destroy();
      });
      from.on("close", () => {
        if (pair.frozen) return;
        to.destroy();
        pairs.delete(pair);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy has no TCP address");
  return {
    port: address.port,
    dropAll() {
      const n = pairs.size;
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
      return n;
    },
    freeze() {
      for (const pair of pairs) {
        pair.frozen = true;
        pair.client.pause();
        pair.upstream.pause();
      }
      return pairs.size;
    },
    blackhole() {
      blackholed = true;
      for (const pair of pairs) {
        pair.frozen = true;
        pair.client.pause();
        pair.upstream.pause();
      }
    },
    restore() {
      blackholed = false;
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    severUpstream() {
      let n = 0;
      for (const pair of pairs) {
        if (!pair.frozen) continue;
        pair.upstream.destroy();
        n++;
      }
      return n;
    },
    accepted: () => accepted,
    open: () => pairs.size,
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
