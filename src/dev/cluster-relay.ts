import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * Relays between this host's loopback and the cluster's network namespace, which nothing else connects: a Unix
 * socket lives in the file system, not in a network namespace, so it bridges the two.
 *
 * - `relayInto` runs inside the namespace (this file as a program, started through nsenter): it accepts on Unix
 *   sockets and connects to ports on the namespace's loopback.
 * - `exposeOnLoopback` runs in the harness: it accepts on 127.0.0.1 and connects to such a Unix socket.
 */

function pipe(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", close);
  b.on("error", close);
  a.on("close", close);
  b.on("close", close);
}

function listen(server: Server, target: string | { port: number; host: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    if (typeof target === "string") server.listen(target, resolve);
    else server.listen(target.port, target.host, resolve);
  });
}

/** Accepts on each Unix socket path and forwards to 127.0.0.1:<port> (where this process runs). */
export async function relayInto(routes: { path: string; port: number }[]): Promise<Server[]> {
  return Promise.all(
    routes.map(async ({ path, port }) => {
      const server = createServer((client) => pipe(client, createConnection({ host: "127.0.0.1", port })));
      await listen(server, path);
      return server;
    }),
  );
}

/** Accepts on a free port of 127.0.0.1 here and forwards to the Unix socket; returns the port and a close. */
export async function exposeOnLoopback(path: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((client) => pipe(client, createConnection({ path })));
  await listen(server, { port: 0, host: "127.0.0.1" });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("unexpected relay address");
  return {
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `node cluster-relay.ts <unix-path>=<port> ...`: prints "ready" once every socket listens. */
if (import.meta.main) {
  const routes = process.argv.slice(2).map((arg) => {
    const at = arg.lastIndexOf("=");
    return { path: arg.slice(0, at), port: Number(arg.slice(at + 1)) };
  });
  await relayInto(routes);
  process.stdout.write("ready\n");
  // Exits with its parent's signals; nothing to clean up (the sockets' directory is removed with the cluster).
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
}
