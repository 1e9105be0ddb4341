import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RouteName } from "../config/types.ts";
import { claimsChallenge, DownstreamError } from "../downstream.ts";
import { cacheKey } from "../tokens/keys.ts";
import { authenticate, authenticateIfPresent, inboundOf, methodNotAllowed } from "./auth.ts";
import { type RouteContext, resolve, tokenFor } from "./context.ts";
import { sendObject } from "./ok.ts";
import type { QueryValue } from "./overrides.ts";
import { ProblemError, sendAcquisitionProblem, sendProblem } from "./problem.ts";

type Req = FastifyRequest<{
  Params: { apiName: string };
  Querystring: Record<string, QueryValue>;
  Body: unknown;
}>;

export function registerDownstreamApiRoutes(app: FastifyInstance, ctx: RouteContext): void {
  async function handle(route: RouteName, request: Req, reply: FastifyReply) {
    let resolved: ReturnType<typeof resolve>;
    try {
      resolved = resolve(ctx, route, request.params.apiName, request.query, inboundOf(request));
      if (!resolved.api.baseUrl)
        throw new ProblemError(400, `The API '${resolved.api.name}' has no BaseUrl to call.`);
    } catch (error) {
      if (error instanceof ProblemError) return sendProblem(reply, error.status, error.message);
      throw error;
    }
    for (const w of resolved.warnings) ctx.log.warn(w);
    // The body is forwarded as received, with the inbound Content-Type (Microsoft's behaviour).
    const contentType = request.headers["content-type"];
    const body =
      contentType && typeof request.body === "string" ? { contentType, text: request.body } : undefined;
    try {
      let token = await tokenFor(ctx, resolved);
      let outcome = await ctx.downstream.call({
        api: resolved.api,
        authorizationHeader: token.authorizationHeader,
        ...(body ? { body } : {}),
      });
      const claims = outcome.result.statusCode === 401 ? claimsChallenge(outcome.wwwAuthenticate) : undefined;
      if (claims) {
        // One retry with the claims the API asked for, as Microsoft's DownstreamApi does.
        const request2 = { ...resolved.request, claims };
        token = await ctx.tokens.acquire(request2, cacheKey(request2));
        outcome = await ctx.downstream.call({
          api: resolved.api,
          authorizationHeader: token.authorizationHeader,
          ...(body ? { body } : {}),
        });
      }
      return sendObject(reply, outcome.result);
    } catch (error) {
      if (error instanceof DownstreamError) {
        ctx.log.warn({ api: resolved.api.name, status: error.status }, error.message);
        return sendProblem(reply, error.status, error.message);
      }
      return sendAcquisitionProblem(reply, error, ctx.log);
    }
  }

  app.post(
    "/DownstreamApiUnauthenticated/:apiName",
    { preHandler: authenticateIfPresent(ctx) },
    (request: Req, reply) => handle("CallDownstreamApiUnauthenticated", request, reply),
  );
  app.post("/DownstreamApi/:apiName", { preHandler: authenticate(ctx) }, (request: Req, reply) =>
    handle("CallDownstreamApi", request, reply),
  );
  // Our addition: ends a long-running OBO session (its refresh token and cached tokens go). The key
  // travels in the path, as the caller chose it; 204 when it existed, 404 when it did not.
  app.delete<{ Params: { sessionKey: string } }>(
    "/LongRunningSessions/:sessionKey",
    async (request, reply) =>
      ctx.tokens.endSession(request.params.sessionKey)
        ? reply.code(204).send()
        : sendProblem(reply, 404, "No long-running session with this key."),
  );
  // POST only, as Microsoft's code maps them (its docs list more methods): ASP.NET routing's 405.
  for (const url of ["/DownstreamApiUnauthenticated/:apiName", "/DownstreamApi/:apiName"])
    app.route({
      method: ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"],
      url,
      handler: methodNotAllowed("POST"),
    });
}
