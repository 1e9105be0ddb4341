import { scrubTokens } from "../lib/log.ts";

/** Errors from the Kubernetes API as values the operator can branch on (re-exported by client.ts). */

/** An error answer from the API server, carrying its Status object's reason (`NotFound`, `Conflict`, ...). */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly reason: string;
  readonly method: string;
  readonly path: string;
  /** The Status object's `details` (e.g. the field causes of an `Invalid`), when the server sent one. */
  readonly details: unknown;
  /** For 410 inside a watch stream, and for Retry-After answers. */
  readonly retryAfterSeconds: number | undefined;

  constructor(init: {
    status: number;
    reason: string;
    message: string;
    method: string;
    path: string;
    details?: unknown;
    retryAfterSeconds?: number;
  }) {
    super(scrubTokens(init.message));
    this.status = init.status;
    this.reason = init.reason;
    this.method = init.method;
    this.path = init.path;
    this.details = init.details;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

export function isApiError(error: unknown, status?: number): error is ApiError {
  return error instanceof ApiError && (status === undefined || error.status === status);
}
export const isNotFound = (error: unknown): boolean => isApiError(error, 404);
export const isConflict = (error: unknown): boolean => isApiError(error, 409);
export const isGone = (error: unknown): boolean => isApiError(error, 410);

const REASON_BY_STATUS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  410: "Expired",
  415: "UnsupportedMediaType",
  422: "Invalid",
  429: "TooManyRequests",
  500: "InternalError",
  503: "ServiceUnavailable",
  504: "Timeout",
};

/** Builds an ApiError from a status code and a response body that may or may not be a Status object. */
export function apiErrorFrom(
  status: number,
  bodyText: string,
  method: string,
  path: string,
  retryAfter?: string,
) {
  let reason = REASON_BY_STATUS[status] ?? "Unknown";
  let message = `${method} ${path}: HTTP ${status}`;
  let details: unknown;
  try {
    const parsed: unknown = JSON.parse(bodyText);
    if (parsed && typeof parsed === "object") {
      const s = parsed as { kind?: unknown; reason?: unknown; message?: unknown; details?: unknown };
      if (typeof s.reason === "string" && s.reason) reason = s.reason;
      if (typeof s.message === "string" && s.message) message = s.message;
      details = s.details;
    }
  } catch {
    // A proxy or a crashed server may answer with text; keep a short, scrubbed excerpt of it.
    const text = bodyText.trim().slice(0, 200);
    if (text) message = `${message}: ${text}`;
  }
  const seconds = retryAfter !== undefined ? Number.parseInt(retryAfter, 10) : Number.NaN;
  return new ApiError({
    status,
    reason,
    message,
    method,
    path,
    details,
    ...(Number.isFinite(seconds) ? { retryAfterSeconds: seconds } : {}),
  });
}
