import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";

/**
 * The HTTPS agent for calls to Entra and Graph. Extra CAs (a CA bundle file, e.g. the local emulator's
 * CA) are trusted in addition to the public roots, never instead of them.
 */
export function outboundDispatcher(extraCaPems: readonly string[] = [], timeoutMs = 15_000): Dispatcher {
  const ca = extraCaPems.length > 0 ? [...rootCertificates, ...extraCaPems] : undefined;
  return new Agent({
    connect: { ...(ca ? { ca } : {}), timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 30_000,
  });
}

/** Reads PEM bundles from files, failing with a message naming the file. */
export function readCaFiles(paths: readonly string[]): string[] {
  return paths.map((path) => {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new Error(`cannot read CA bundle ${path}: ${(error as Error).message}`);
    }
    if (!text.includes("-----BEGIN CERTIFICATE-----"))
      throw new Error(`CA bundle ${path} holds no PEM certificate`);
    return text;
  });
}
