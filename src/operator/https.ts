import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";

export interface OutboundOptions {
  /**
   * The bound of every call (default 15 s): of connecting, of waiting for the answer's headers, of a
   * pause in its body, and of the whole call from its dispatch to the last byte of its answer.
   */
  timeoutMs?: number;
  /**
   * The leadership term (or any signal) calls belong to: a call dispatched once it has aborted is refused
   * before anything is sent. Calls already in flight are not aborted (an aborted write may still be
   * carried out by Graph); they end within `timeoutMs`, and the Lease is held until they have.
   */
  fence?: () => AbortSignal | undefined;
}

/** A call to Entra or Graph refused because the leadership term it belongs to has ended. */
export class OutboundFencedError extends Error {
  constructor(origin: string) {
    super(`not sent to ${origin}: this replica no longer leads`);
    this.name = "OutboundFencedError";
  }
}

/** A call to Entra or Graph that had no complete answer within its total deadline. */
export class OutboundTimeoutError extends Error {
  constructor(origin: string, ms: number) {
    super(`no complete answer from ${origin} within ${ms} ms`);
    this.name = "OutboundTimeoutError";
  }
}

/**
 * Passes everything to the caller's handler, and aborts the call when it has not ended `ms` after its
 * dispatch. undici's own timeouts are per phase (headers, then each pause in the body), so a server
 * that trickles its answer could otherwise hold a call, and the drain waiting for it, indefinitely.
 */
function withDeadline(
  handler: Dispatcher.DispatchHandler,
  origin: string,
  ms: number,
): Dispatcher.DispatchHandler {
  let controller: Dispatcher.DispatchController | undefined;
  let expired: Error | undefined;
  const timer = setTimeout(() => {
    expired = new OutboundTimeoutError(origin, ms);
    controller?.abort(expired);
  }, ms);
  // Like undici's own timers, a pending deadline does not keep the process alive by itself.
  timer.unref();
  return {
    onRequestStart(c, context) {
      controller = c;
      handler.onRequestStart?.(c, context);
      // Expired while waiting for a connection: end it now that it can be aborted.
      if (expired && !c.aborted) c.abort(expired);
    },
    onRequestUpgrade: (c, statusCode, headers, socket) =>
      handler.onRequestUpgrade?.(c, statusCode, headers, socket),
    onResponseStart: (c, statusCode, headers, statusMessage) =>
      handler.onResponseStart?.(c, statusCode, headers, statusMessage),
    onResponseData: (c, chunk) => handler.onResponseData?.(c, chunk),
    onResponseEnd(c, trailers) {
      clearTimeout(timer);
      handler.onResponseEnd?.(c, trailers);
    },
    onResponseError(c, error) {
      clearTimeout(timer);
      handler.onResponseError?.(c, error);
    },
    onResponseStarted: () => handler.onResponseStarted?.(),
    onBodySent: (chunk) => handler.onBodySent?.(chunk),
    onRequestSent: () => handler.onRequestSent?.(),
  };
}

/**
 * The HTTPS agent for calls to Entra and Graph. Extra CAs (a CA bundle file, e.g. the local emulator's
 * CA) are trusted in addition to the public roots, never instead of them.
 */
export function outboundDispatcher(
  extraCaPems: readonly string[] = [],
  options: OutboundOptions = {},
): Dispatcher {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const ca = extraCaPems.length > 0 ? [...rootCertificates, ...extraCaPems] : undefined;
  const agent = new Agent({
    connect: { ...(ca ? { ca } : {}), timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 30_000,
  });
  return agent.compose((dispatch) => (opts, handler) => {
    const origin = String(opts.origin ?? "");
    // Thrown here, the call's promise rejects (undici's request() catches what dispatch throws).
    if (options.fence?.()?.aborted) throw new OutboundFencedError(origin);
    return dispatch(opts, withDeadline(handler, origin, timeoutMs));
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
