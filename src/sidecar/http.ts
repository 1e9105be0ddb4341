import type { Dispatcher } from "undici";

export type Undici = typeof import("undici");

export interface OutboundOptions {
  /** Extra CA certificates (PEM) trusted in addition to the system roots, e.g. a local Entra emulator's. */
  extraCaPem?: string;
  connections?: number;
}

/** undici and the pool, once loaded. */
export interface OutboundClient {
  undici: Undici;
  dispatcher: Dispatcher;
}

/**
 * The one connection pool for calls to Entra and to downstream APIs. Trust is added here, per pool,
 * never by turning TLS verification off or touching process-wide settings.
 *
 * undici (about a hundred modules) is imported on the first outbound call, not at start-up: a sidecar
 * is ready sooner without it, and `warm()` loads it in the background once the port is open.
 */
export interface Outbound {
  get(): Promise<OutboundClient>;
  /** Starts loading undici without waiting for it. */
  warm(): void;
  close(): Promise<void>;
}

export function createOutbound(options: OutboundOptions = {}): Outbound {
  let loading: Promise<OutboundClient> | undefined;
  let closed = false;
  const get = (): Promise<OutboundClient> => {
    if (closed) return Promise.reject(new Error("the outbound connection pool is closed"));
    loading ??= Promise.all([import("undici"), import("node:tls")]).then(([undici, tls]) => ({
      undici,
      dispatcher: new undici.Agent({
        connections: options.connections ?? 64,
        keepAliveTimeout: 30_000,
        ...(options.extraCaPem ? { connect: { ca: [...tls.rootCertificates, options.extraCaPem] } } : {}),
      }),
    }));
    return loading;
  };
  return {
    get,
    warm() {
      get().catch(() => {
        // The first real call reports the failure.
      });
    },
    async close() {
      closed = true;
      const client = await loading?.catch(() => undefined);
      await client?.dispatcher.close();
    },
  };
}
