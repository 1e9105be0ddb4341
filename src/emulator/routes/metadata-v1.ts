import type { FastifyInstance } from "fastify";
import { type TokenContext, v1IssuerOf } from "../context.ts";
import { errorBody, errors } from "../errors.ts";

/** Multi-tenant aliases: their documents carry a `{tenantid}` issuer. */
const MULTI_TENANT_ALIASES = new Set(["common", "organizations"]);

const TENANT_PARAMS = {
  type: "object",
  properties: { tenant: { type: "string", maxLength: 256 } },
  required: ["tenant"],
} as const;

/**
 * The v1.0 OpenID configuration and keys, at Entra's paths (`/{tenant}/.well-known/openid-configuration`,
 * `/{tenant}/discovery/keys`). Its `issuer` is the v1 token issuer, `https://sts.windows.net/{tid}/` in
 * the global cloud (another host in sovereign clouds): a resource that accepts v1 tokens reads it here
 * rather than hard-coding it. The signing keys are Entra's shared set (served by metadata.ts).
 */
export function registerV1MetadataRoutes(app: FastifyInstance, ctx: TokenContext): void {
  app.get<{ Params: { tenant: string } }>(
    "/:tenant/.well-known/openid-configuration",
    { schema: { params: TENANT_PARAMS } },
    async (request, reply) => {
      const name = request.params.tenant;
      const tenant = ctx.store.tenant(name);
      if (!tenant && !MULTI_TENANT_ALIASES.has(name.toLowerCase()))
        return reply.code(400).send(errorBody(errors.tenantNotFound(name, "invalid_tenant"), ctx.baseUrl));
      const base = `${ctx.baseUrl}/${tenant ? tenant.id : name}`;
      return {
        token_endpoint: `${base}/oauth2/token`,
        jwks_uri: `${base}/discovery/keys`,
        issuer: v1IssuerOf(tenant ? tenant.id : "{tenantid}"),
        authorization_endpoint: `${base}/oauth2/authorize`,
        id_token_signing_alg_values_supported: ["RS256"],
        response_types_supported: ["code", "id_token", "code id_token", "token id_token", "token"],
        subject_types_supported: ["pairwise"],
        tenant_region_scope: "WW",
        cloud_instance_name: new URL(ctx.baseUrl).host,
      };
    },
  );
  // The keys of both paths (`/discovery/keys`, `/discovery/v2.0/keys`) are served by metadata.ts.
}
