import type { FastifyInstance, FastifyReply } from "fastify";
import { issuerOf, type TokenContext } from "../context.ts";
import { errorBody, errors } from "../errors.ts";

const TENANT_PARAMS = {
  type: "object",
  properties: { tenant: { type: "string", maxLength: 256 } },
  required: ["tenant"],
} as const;

/** Multi-tenant aliases Entra accepts in authority URLs; their metadata carries a `{tenantid}` issuer. */
const ALIASES = new Set(["common", "organizations", "consumers"]);

/** The OpenID Connect discovery document, JWKS and MSAL's instance discovery, at Entra's paths. */
export function registerMetadataRoutes(app: FastifyInstance, ctx: TokenContext): void {
  app.get<{ Params: { tenant: string } }>(
    "/:tenant/v2.0/.well-known/openid-configuration",
    { schema: { params: TENANT_PARAMS } },
    async (request, reply) => {
      const name = request.params.tenant;
      const tenant = ctx.store.tenant(name);
      if (!tenant && !ALIASES.has(name.toLowerCase())) {
        return reply.code(400).send(errorBody(errors.tenantNotFound(name, "invalid_tenant"), ctx.baseUrl));
      }
      const path = tenant ? tenant.id : name;
      const base = `${ctx.baseUrl}/${path}`;
      return {
        token_endpoint: `${base}/oauth2/v2.0/token`,
        token_endpoint_auth_methods_supported: [
          "client_secret_post",
          "private_key_jwt",
          "client_secret_basic",
        ],
        jwks_uri: `${base}/discovery/v2.0/keys`,
        response_modes_supported: ["query", "fragment", "form_post"],
        subject_types_supported: ["pairwise"],
        id_token_signing_alg_values_supported: ["RS256"],
        response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
        scopes_supported: ["openid", "profile", "email", "offline_access"],
        issuer: tenant ? issuerOf(ctx.baseUrl, tenant.id) : `${ctx.baseUrl}/{tenantid}/v2.0`,
        request_uri_parameter_supported: false,
        authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
        device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
        end_session_endpoint: `${base}/oauth2/v2.0/logout`,
        claims_supported: [
          "sub",
          "iss",
          "aud",
          "exp",
          "iat",
          "nbf",
          "tid",
          "oid",
          "azp",
          "idtyp",
          "roles",
          "scp",
          "ver",
        ],
        tenant_region_scope: "WW",
        cloud_instance_name: new URL(ctx.baseUrl).host,
      };
    },
  );

  // Entra's keys are shared: every tenant and /common (also /organizations, /consumers) publish the same
  // set; the v2 path names the issuer beside each key (`{tenantid}` on the multi-tenant aliases).
  const keys = async (name: string, reply: FastifyReply, withIssuer: boolean) => {
    const tenant = ctx.store.tenant(name);
    if (!tenant && !ALIASES.has(name.toLowerCase()))
      return reply.code(400).send(errorBody(errors.tenantNotFound(name, "invalid_tenant"), ctx.baseUrl));
    const issuer = tenant ? issuerOf(ctx.baseUrl, tenant.id) : `${ctx.baseUrl}/{tenantid}/v2.0`;
    const published = await ctx.keys.jwks();
    return { keys: withIssuer ? published.map((k) => ({ ...k, issuer })) : published };
  };
  app.get<{ Params: { tenant: string } }>(
    "/:tenant/discovery/v2.0/keys",
    { schema: { params: TENANT_PARAMS } },
    async (request, reply) => keys(request.params.tenant, reply, true),
  );
  app.get<{ Params: { tenant: string } }>(
    "/:tenant/discovery/keys",
    { schema: { params: TENANT_PARAMS } },
    async (request, reply) => keys(request.params.tenant, reply, false),
  );

  // MSAL asks this before trusting an authority it does not know; answer that this host is its own cloud.
  app.get<{ Querystring: { authorization_endpoint?: string } }>(
    "/common/discovery/instance",
    {
      schema: {
        querystring: {
          type: "object",
          properties: {
            "api-version": { type: "string" },
            authorization_endpoint: { type: "string", maxLength: 2048 },
          },
        },
      },
    },
    async (request) => {
      const host = new URL(ctx.baseUrl).host;
      const tenant = tenantOfAuthorizeUrl(request.query.authorization_endpoint) ?? "common";
      return {
        tenant_discovery_endpoint: `${ctx.baseUrl}/${tenant}/v2.0/.well-known/openid-configuration`,
        "api-version": "1.1",
        metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
      };
    },
  );
}

function tenantOfAuthorizeUrl(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).pathname.split("/").filter(Boolean)[0];
  } catch {
    return undefined;
  }
}
