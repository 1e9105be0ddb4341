import type { FastifyReply, FastifyRequest } from "fastify";
import type { JWTPayload } from "jose";
import { bearerToken, InvalidTokenError } from "../inbound.ts";
import type { RouteContext } from "./context.ts";
import { sendProblem } from "./problem.ts";

export interface Caller {
  token: string;
  claims: JWTPayload;
}

const callers = new WeakMap<FastifyRequest, Caller>();

export function callerOf(request: FastifyRequest): Caller | undefined {
  return callers.get(request);
}

/** The caller as token planning needs it: the raw token and its verified tenant. */
export function inboundOf(request: FastifyRequest): { token: string; tenant?: string } | undefined {
  const caller = callers.get(request);
  if (!caller) return undefined;
  const tid = caller.claims.tid;
  return typeof tid === "string" ? { token: caller.token, tenant: tid } : { token: caller.token };
}

/**
 * preHandler for the `…Unauthenticated` routes, as ASP.NET's authentication middleware treats them: it
 * authenticates every request that carries a bearer token, whatever the endpoint, so a valid token
 * becomes the request's user (and an API on behalf of the user works, as in Microsoft's sidecar); an
 * invalid one, or one that cannot be checked, leaves the request anonymous (AllowAnonymous: no 401).
 */
export function authenticateIfPresent(ctx: RouteContext) {
  return async (request: FastifyRequest): Promise<void> => {
    const token = bearerToken(request.headers.authorization);
    if (!token) return;
    try {
      callers.set(request, { token, claims: await ctx.inbound.verify(token) });
    } catch (error) {
      ctx.log.debug(
        { reason: error instanceof Error ? error.message : "unknown" },
        "bearer token on an unauthenticated route not accepted; the request goes on anonymous",
      );
    }
  };
}

/** `GET`/`POST` only: other methods on a route's path get ASP.NET routing's 405 with `Allow`. */
export function methodNotAllowed(allow: string) {
  return async (_request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    await reply.code(405).header("allow", allow).header("content-length", "0").send();
  };
}

/**
 * preHandler for the authenticated routes: a missing token is a bare 401 challenge, a bad one a 401
 * with `error="invalid_token"`, both with empty bodies as ASP.NET's JwtBearer answers.
 */
export function authenticate(ctx: RouteContext) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const token = bearerToken(request.headers.authorization);
    if (!token) {
      await reply.code(401).header("www-authenticate", "Bearer").send();
      return;
    }
    try {
      callers.set(request, { token, claims: await ctx.inbound.verify(token) });
    } catch (error) {
      if (error instanceof InvalidTokenError) {
        ctx.log.info({ reason: error.message }, "inbound token rejected");
        await reply.code(401).header("www-authenticate", 'Bearer error="invalid_token"').send();
        return;
      }
      ctx.log.error({ err: (error as Error).message }, "cannot validate inbound tokens");
      await sendProblem(
        reply,
        500,
        "The tenant's signing keys could not be loaded to validate the bearer token.",
      );
    }
  };
}
