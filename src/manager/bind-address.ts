import { isIP } from "node:net";
import { UsageError } from "../lib/command.ts";

/** True for addresses only the pod itself can reach. */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

/** "host:port", "[v6]:port" or "0" (off). */
export function parseBindAddress(value: string): { host: string; port: number } | undefined {
  if (value === "0") return undefined;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new UsageError(`--metrics-bind-address must be host:port (or 0 to turn it off), got '${value}'`);
  return { host: match[1] ?? match[2] ?? "", port };
}
