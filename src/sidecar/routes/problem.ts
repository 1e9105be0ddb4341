import type { FastifyReply } from "fastify";
import type { Logger } from "pino";
import { scrubTokens } from "../../lib/log.ts";
import { entraRefusal, isMsalNetworkError } from "../acquire/msal.ts";
import { isEntraUnavailable } from "../acquire/network.ts";

/** RFC 9110 links and titles, as ASP.NET Core's ProblemDetails defaults give them. */
const PROBLEM_TYPES: Record<number, [string, string]> = {
  400: ["https://tools.ietf.org/html/rfc9110#section-15.5.1", "Bad Request"],
  401: ["https://tools.ietf.org/html/rfc9110#section-15.5.2", "Unauthorized"],
  403: ["https://tools.ietf.org/html/rfc9110#section-15.5.4", "Forbidden"],
  404: ["https://tools.ietf.org/html/rfc9110#section-15.5.5", "Not Found"],
  413: ["https://tools.ietf.org/html/rfc9110#section-15.5.14", "Content Too Large"],
  500: [
    "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    "An error occurred while processing your request.",
  ],
  502: ["https://tools.ietf.org/html/rfc9110#section-15.6.3", "Bad Gateway"],
  504: ["https://tools.ietf.org/html/rfc9110#section-15.6.5", "Gateway Timeout"],
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

/** An error that carries the HTTP problem the caller should get. */
export class ProblemError extends Error {
  readonly status: number;
  constructor(status: number, detail: string) {
    super(detail);
    this.name = "ProblemError";
    this.status = status;
  }
}

export function problem(status: number, detail: string): Problem {
  const [type, title] = PROBLEM_TYPES[status] ?? PROBLEM_TYPES[500]!;
  return { type, title, status, detail: scrubTokens(detail) };
}

export function sendProblem(reply: FastifyReply, status: number, detail: string): FastifyReply {
  return reply
    .code(status)
    .type("application/problem+json")
    .send(JSON.stringify(problem(status, detail)));
}

/**
 * Maps a token-acquisition failure as Microsoft's sidecar does: an error answered by Entra (AADSTS…) is
 * a 401 carrying Entra's message; anything else a 500. Messages are scrubbed of anything token-shaped.
 */
export function acquisitionProblem(error: unknown): Problem {
  if (error instanceof ProblemError) return problem(error.status, error.message);
  if (isEntraUnavailable(error)) {
    return error.status === 0 ? problem(500, error.errorMessage) : problem(401, error.errorMessage);
  }
  const refusal = entraRefusal(error);
  if (refusal !== undefined) return problem(401, refusal);
  if (isMsalNetworkError(error)) return problem(500, "Entra could not be reached");
  return problem(500, "An unexpected error occurred.");
}

export function sendAcquisitionProblem(reply: FastifyReply, error: unknown, log: Logger): FastifyReply {
  const p = acquisitionProblem(error);
  if (p.status === 500)
    log.error(
      { err: error instanceof Error ? scrubTokens(error.message) : "unknown" },
      "token acquisition failed",
    );
  else log.warn({ detail: p.detail }, "token acquisition refused by Entra");
  return reply.code(p.status).type("application/problem+json").send(JSON.stringify(p));
}
