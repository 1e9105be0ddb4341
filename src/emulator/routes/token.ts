import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Params } from "../client-auth.ts";
import type { TokenContext } from "../context.ts";
import type { TenantSpec } from "../directory.ts";
import { EntraError, errorBody, errors } from "../errors.ts";
import { type FaultQueue, grantKey, type RequestCounters } from "../faults.ts";
import { clientCredentials } from "../grants/client-credentials.ts";
import { onBehalfOf } from "../grants/obo.ts";
import { refreshToken } from "../grants/refresh.ts";
import type { GrantResult } from "../grants/types.ts";
import { userFic } from "../grants/user-fic.ts";

export const JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer";

type GrantHandler = (ctx: TokenContext, t: TenantSpec, p: Params) => Promise<GrantResult>;

const HANDLERS: Record<string, GrantHandler> = {
  client_credentials: clientCredentials,
  [JWT_BEARER_GRANT]: onBehalfOf,
  user_fic: userFic,
  refresh_token: refreshToken,
};

const NO_STORE = { "cache-control": "no-store, no-cache", pragma: "no-cache" };

/** `POST /{tenant}/oauth2/v2.0/token`: Entra's token endpoint (form-encoded, as the spec requires). */
export function registerTokenRoute(
  app: FastifyInstance,
  ctx: TokenContext,
  faults: FaultQueue,
  counters: RequestCounters,
): void {
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string", bodyLimit: 256 * 1024 },
    (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    },
  );

  app.post<{ Params: { tenant: string }; Body: Params }>(
    "/:tenant/oauth2/v2.0/token",
    {
      schema: {
        params: {
          type: "object",
          properties: { tenant: { type: "string", maxLength: 256 } },
          required: ["tenant"],
        },
        body: { type: "object", additionalProperties: { type: "string", maxLength: 64 * 1024 } },
      },
    },
    async (request, reply) => {
      const params = formParams(request.headers["content-type"], request.body, request.headers.authorization);
      const correlation = headerValue(request.headers["client-request-id"]);
      const key = grantKey(params);
      const clientId = params.client_id;
      counters.record(clientId ?? "(none)", key);
      const fault = faults.take(clientId, key);
      if (fault) {
        ctx.logger.info(
          { clientId, grant: key, fault: fault.kind, status: fault.status },
          "token request: injected fault",
        );
        if (fault.kind === "drop") {
          request.raw.socket.destroy();
          return reply.hijack();
        }
        if (fault.kind === "delay") await sleep(fault.delayMs ?? 1000);
        else if (fault.kind === "claimsChallenge") {
          const resource = (params.scope ?? "").split(/\s+/)[0]?.replace(/\/[^/]*$/, "") || "the resource";
          const claims =
            fault.claims ??
            JSON.stringify({ access_token: { polids: { essential: true, values: [randomUUID()] } } });
          return sendError(
            reply,
            ctx,
            errors.claimsChallenge(fault.code ?? 50076, resource, claims),
            correlation,
          );
        } else {
          const status = fault.status ?? 500;
          const err =
            status === 429 ? errors.throttled(fault.retryAfterSeconds ?? 1) : errors.transient(status);
          return sendError(reply, ctx, err, correlation);
        }
      }
      const tenant = ctx.store.tenant(request.params.tenant);
      try {
        if (!tenant) throw errors.tenantNotFound(request.params.tenant);
        const grant = params.grant_type;
        if (!grant) throw errors.missingParameter("grant_type");
        const handler = HANDLERS[grant];
        if (!handler) throw errors.unsupportedGrantType(grant);
        const result = await handler(ctx, tenant, params);
        ctx.logger.info(
          { tenant: tenant.id, grant: key, ...result.log, expiresIn: result.body.expires_in },
          "token issued",
        );
        return reply.headers(NO_STORE).send(result.body);
      } catch (error) {
        if (!(error instanceof EntraError)) throw error;
        ctx.logger.info(
          {
            tenant: tenant?.id ?? request.params.tenant,
            clientId,
            grant: key,
            code: `AADSTS${error.code}`,
            reason: error.message,
          },
          "token request rejected",
        );
        return sendError(reply, ctx, error, correlation);
      }
    },
  );
}

function sendError(reply: FastifyReply, ctx: TokenContext, err: EntraError, correlation: string | undefined) {
  return reply
    .code(err.status)
    .headers({ ...NO_STORE, ...err.headers })
    .send(errorBody(err, ctx.baseUrl, correlation));
}

/**
 * Entra reads only form-encoded bodies: a JSON body is as good as an empty one. HTTP Basic client
 * authentication (client_secret_basic) is folded into the parameters.
 */
function formParams(
  contentType: string | undefined,
  body: Params | undefined,
  authorization: string | undefined,
): Params {
  const params: Params = (contentType ?? "").startsWith("application/x-www-form-urlencoded")
    ? { ...body }
    : {};
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization ?? "")?.[1];
  if (basic && params.client_secret === undefined) {
    const decoded = Buffer.from(basic, "base64").toString("utf8");
    const cut = decoded.indexOf(":");
    if (cut > 0) {
      params.client_id ??= decodeURIComponent(decoded.slice(0, cut));
      params.client_secret = decodeURIComponent(decoded.slice(cut + 1));
    }
  }
  return params;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
