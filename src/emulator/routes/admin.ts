import { randomBytes } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import { userTokenClaims } from "../claims.ts";
import { type TokenContext, tokenIssuer } from "../context.ts";
import type { FaultQueue, FaultSpec, RequestCounters } from "../faults.ts";
import type { Collection } from "../store.ts";
import { tokenSettings } from "../token-shape.ts";

/** The Azure CLI's app id: the usual client a developer's user token comes from. */
export const DEV_CLIENT_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

const COLLECTIONS: Collection[] = [
  "applications",
  "agentIdentities",
  "users",
  "agentUsers",
  "resources",
  "grants",
];

const ficParams = {
  type: "object",
  properties: {
    tenant: { type: "string", maxLength: 256 },
    appId: { type: "string", maxLength: 64 },
    name: { type: "string", maxLength: 120 },
  },
  required: ["tenant", "appId"],
} as const;

const keyCredentialBody = {
  type: "object",
  required: ["key"],
  additionalProperties: false,
  properties: {
    key: { type: "string", minLength: 1, maxLength: 64 * 1024 },
    keyId: { type: "string", maxLength: 64 },
    displayName: { type: "string", maxLength: 256 },
    startDateTime: { type: "string", maxLength: 64 },
    endDateTime: { type: "string", maxLength: 64 },
    type: { type: "string", enum: ["AsymmetricX509Cert"] },
    usage: { type: "string", enum: ["Verify"] },
  },
} as const;

const tenantParams = {
  type: "object",
  properties: { tenant: { type: "string", maxLength: 256 } },
  required: ["tenant"],
} as const;

export function problem(reply: FastifyReply, status: number, title: string, detail: string) {
  return reply
    .code(status)
    .type("application/problem+json")
    .send({ type: "about:blank", title, status, detail });
}

/** The admin API under /_emulator (unauthenticated: the emulator listens on loopback by default). */
export function registerAdminRoutes(
  app: FastifyInstance,
  ctx: TokenContext,
  faults: FaultQueue,
  counters: RequestCounters,
): void {
  const tenantOr404 = (name: string, reply: FastifyReply) => {
    const t = ctx.store.tenant(name);
    if (!t) problem(reply, 404, "Not Found", `tenant '${name}' does not exist`);
    return t;
  };

  app.get("/_emulator/healthz", async () => ({ status: "ok" }));

  app.get("/_emulator/directory", async () => ctx.store.spec);

  app.put("/_emulator/directory", { schema: { body: { type: "object" } } }, async (request, reply) => {
    ctx.store.replace(request.body);
    ctx.logger.info({ tenants: ctx.store.spec.tenants.length }, "directory replaced");
    return reply.code(200).send(ctx.store.spec);
  });

  app.post("/_emulator/tenants", { schema: { body: { type: "object" } } }, async (request, reply) => {
    ctx.store.replace({ tenants: [...ctx.store.spec.tenants, request.body] });
    return reply.code(201).send(ctx.store.spec.tenants.at(-1));
  });

  app.post<{ Params: { tenant: string; collection: string } }>(
    "/_emulator/tenants/:tenant/:collection",
    {
      schema: {
        params: {
          type: "object",
          properties: { tenant: { type: "string" }, collection: { type: "string", enum: COLLECTIONS } },
          required: ["tenant", "collection"],
        },
        body: { type: "object" },
      },
    },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      const stored = ctx.store.add(t.id, request.params.collection as Collection, request.body);
      ctx.logger.info({ tenant: t.id, collection: request.params.collection }, "directory object added");
      return reply.code(201).send(stored);
    },
  );

  app.post<{ Params: { tenant: string; appId: string } }>(
    "/_emulator/tenants/:tenant/applications/:appId/federatedIdentityCredentials",
    { schema: { params: ficParams, body: { type: "object" } } },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      const fic = ctx.store.addFederatedCredential(t.id, request.params.appId, request.body);
      ctx.logger.info(
        {
          tenant: t.id,
          appId: request.params.appId,
          fic: fic.name,
          issuer: fic.issuer,
          subject: fic.subject,
        },
        "federated credential added",
      );
      return reply.code(201).send(fic);
    },
  );

  app.delete<{ Params: { tenant: string; appId: string; name: string } }>(
    "/_emulator/tenants/:tenant/applications/:appId/federatedIdentityCredentials/:name",
    { schema: { params: ficParams } },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      if (!ctx.store.removeFederatedCredential(t.id, request.params.appId, request.params.name)) {
        return problem(reply, 404, "Not Found", `no federated identity credential '${request.params.name}'`);
      }
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { tenant: string; appId: string } }>(
    "/_emulator/tenants/:tenant/applications/:appId/keyCredentials",
    { schema: { params: ficParams, body: keyCredentialBody } },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      const key = ctx.store.addKeyCredential(t.id, request.params.appId, request.body);
      ctx.logger.info(
        { tenant: t.id, appId: request.params.appId, keyId: key.keyId, thumbprint: key.customKeyIdentifier },
        "key credential added",
      );
      return reply.code(201).send(key);
    },
  );

  app.delete<{ Params: { tenant: string; appId: string; name: string } }>(
    "/_emulator/tenants/:tenant/applications/:appId/keyCredentials/:name",
    { schema: { params: ficParams } },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      if (!ctx.store.removeKeyCredential(t.id, request.params.appId, request.params.name)) {
        return problem(reply, 404, "Not Found", `no key credential '${request.params.name}'`);
      }
      return reply.code(204).send();
    },
  );

  app.post<{ Body: FaultSpec }>(
    "/_emulator/faults",
    {
      schema: {
        body: {
          type: "object",
          required: ["count", "kind"],
          additionalProperties: false,
          properties: {
            count: { type: "integer", minimum: 1, maximum: 100000 },
            kind: { type: "string", enum: ["status", "delay", "drop", "claimsChallenge", "issuerFetch"] },
            status: { type: "integer", enum: [500, 503, 429] },
            code: { type: "integer", enum: [50076, 50079] },
            claims: { type: "string", minLength: 2, maxLength: 4096 },
            grant: {
              type: "string",
              enum: [
                "client_credentials",
                "client_credentials+fmi_path",
                "on_behalf_of",
                "user_fic",
                "refresh_token",
              ],
            },
            retryAfterSeconds: { type: "integer", minimum: 0, maximum: 3600 },
            delayMs: { type: "integer", minimum: 0, maximum: 120000 },
            clientId: { type: "string", maxLength: 64 },
          },
        },
      },
    },
    async (request, reply) => {
      if (request.body.claims !== undefined) {
        try {
          JSON.parse(request.body.claims);
        } catch {
          return problem(reply, 400, "Bad Request", "claims must be a JSON string (Entra's claims value)");
        }
      }
      faults.add(request.body);
      return reply.code(201).send({ pending: faults.pending() });
    },
  );
  app.get("/_emulator/faults", async () => ({ pending: faults.pending() }));
  app.delete("/_emulator/faults", async (_request, reply) => {
    faults.clear();
    return reply.code(204).send();
  });

  app.get("/_emulator/counters", async () => counters.snapshot());
  app.post("/_emulator/counters/reset", async (_request, reply) => {
    counters.reset();
    return reply.code(204).send();
  });

  app.post<{ Params: { tenant: string } }>(
    "/_emulator/tenants/:tenant/keys/rotate",
    { schema: { params: tenantParams } },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      const kid = await ctx.keys.rotate(t.id);
      ctx.logger.info({ tenant: t.id, kid }, "signing key rotated");
      return { kid };
    },
  );

  // Entra's signing keys are shared by all tenants; so are the emulator's (the tenant route rotates them too).
  app.post("/_emulator/keys/rotate", async () => {
    const kid = await ctx.keys.rotate();
    ctx.logger.info({ kid }, "signing key rotated");
    return { kid };
  });

  app.post<{
    Params: { tenant: string };
    Body: {
      userId?: string;
      username?: string;
      audience: string;
      scopes?: string[];
      lifetimeSeconds?: number;
      clientAppId?: string;
    };
  }>(
    "/_emulator/tenants/:tenant/tokens/user",
    {
      schema: {
        params: tenantParams,
        body: {
          type: "object",
          required: ["audience"],
          additionalProperties: false,
          properties: {
            userId: { type: "string" },
            username: { type: "string" },
            audience: { type: "string", minLength: 1 },
            scopes: { type: "array", items: { type: "string" } },
            lifetimeSeconds: { type: "integer", minimum: -86400, maximum: 86400 },
            clientAppId: { type: "string" },
          },
        },
      },
    },
    async (request, reply) => {
      const t = tenantOr404(request.params.tenant, reply);
      if (!t) return reply;
      const body = request.body;
      const ref = body.userId ?? body.username;
      const user = ref ? ctx.store.user(t, ref) : undefined;
      if (!user)
        return problem(
          reply,
          400,
          "Bad Request",
          `user '${ref ?? ""}' does not exist (give userId or username)`,
        );
      const resource = ctx.store.resource(t, body.audience);
      if (!resource)
        return problem(
          reply,
          400,
          "Bad Request",
          `audience '${body.audience}' is not an app or resource of the tenant`,
        );
      const scopes = body.scopes ?? resource.scopes ?? [];
      const now = ctx.now();
      const lifetime = body.lifetimeSeconds ?? ctx.settings.accessTokenLifetimeSeconds;
      const shape = tokenSettings(resource, body.audience);
      const token = await ctx.keys.sign(
        t.id,
        userTokenClaims({
          issuer: tokenIssuer(ctx.baseUrl, t.id, shape.version),
          tenantId: t.id,
          resource: shape,
          variation: ctx.nextVariation(),
          client: { appId: body.clientAppId ?? DEV_CLIENT_APP_ID, oid: DEV_CLIENT_APP_ID },
          now,
          lifetimeSeconds: lifetime,
          azpacr: "0",
          uti: randomBytes(16).toString("base64url"),
          user: {
            oid: user.objectId,
            upn: user.userPrincipalName,
            name: user.displayName ?? user.userPrincipalName,
            isAgentUser: user.agentIdentityAppId !== undefined,
          },
          scopes,
        }),
      );
      ctx.logger.info(
        { tenant: t.id, userOid: user.objectId, audience: shape.audience, scopes },
        "dev user token minted",
      );
      return { token_type: "Bearer", expires_in: lifetime, access_token: token };
    },
  );

  app.get("/_emulator/settings", async () => ctx.settings);
  app.post<{
    Body: {
      accessTokenLifetimeSeconds?: number;
      rejectReplayedAssertions?: boolean;
      federatedCredentialPropagationSeconds?: number;
    };
  }>(
    "/_emulator/settings",
    {
      schema: {
        body: {
          type: "object",
          additionalProperties: false,
          properties: {
            accessTokenLifetimeSeconds: { type: "integer", minimum: 1, maximum: 86400 },
            rejectReplayedAssertions: { type: "boolean" },
            federatedCredentialPropagationSeconds: { type: "integer", minimum: 0, maximum: 3600 },
          },
        },
      },
    },
    async (request) => {
      Object.assign(ctx.settings, request.body);
      return ctx.settings;
    },
  );

  app.post("/_emulator/refresh-tokens/expire", async (_request, reply) => {
    ctx.refreshTokens.expireAll(ctx.now());
    return reply.code(204).send();
  });
}
