import type { FastifyInstance } from "fastify";
import { authenticate, callerOf, methodNotAllowed } from "./auth.ts";
import { OTHER_THAN_GET } from "./authorization-header.ts";
import type { RouteContext } from "./context.ts";
import { sendObject } from "./ok.ts";
import { sendProblem } from "./problem.ts";

/**
 * Microsoft passes the whole `AzureAd:Scopes` string as one accepted scope and compares it with the
 * token's space-separated `scp`/`scope`; so does this (pure).
 */
export function hasAcceptedScope(claims: Record<string, unknown>, accepted: string): boolean {
  const raw =
    typeof claims.scp === "string" ? claims.scp : typeof claims.scope === "string" ? claims.scope : "";
  return raw.split(" ").includes(accepted);
}

export function registerValidateRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.route({ method: OTHER_THAN_GET, url: "/Validate", handler: methodNotAllowed("GET") });
  app.get("/Validate", { preHandler: authenticate(ctx) }, async (request, reply) => {
    const caller = callerOf(request);
    if (!caller) return sendProblem(reply, 400, "No token found");
    const accepted = ctx.config.validateScopes;
    if (accepted && !hasAcceptedScope(caller.claims, accepted)) {
      return reply
        .code(403)
        .type("text/plain; charset=utf-8")
        .send(
          `IDW10203: The 'scope' or 'scp' claim does not contain scopes '${accepted}' or was not found. `,
        );
    }
    return sendObject(reply, { protocol: "Bearer", token: caller.token, claims: caller.claims });
  });
}
