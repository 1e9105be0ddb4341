import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";

export interface OutboundOptions {
  /** Extra CA certificates (PEM) trusted in addition to the system roots, e.g. a local Entra emulator's. */
  extraCaPem?: string;
  connections?: number;
}

/**
 * The one connection pool for calls to Entra and to downstream APIs. Trust is added here, per pool,
 * never by turning TLS verification off or touching process-wide settings.
 */
export function createDispatcher(options: OutboundOptions = {}): Dispatcher {
  return new Agent({
    connections: options.connections ?? 64,
    keepAliveTimeout: 30_000,
    ...(options.extraCaPem ? { connect: { ca: [...rootCertificates, options.extraCaPem] } } : {}),
  });
}
