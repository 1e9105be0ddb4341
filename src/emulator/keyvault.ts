import type { FastifyInstance, FastifyReply } from "fastify";
import type { TokenContext } from "./context.ts";
import { audiences, decodeUntrusted, ownIssuerTenant, ownSignatureValid } from "./own-tokens.ts";

/**
 * A Key Vault subset: the secrets data plane as Azure Key Vault answers it, for the sidecar's `KeyVault`
 * certificate credential (a certificate with its private key is read as the secret of the same name).
 *
 * - `GET /keyvault/{vault}/secrets/{name}[/{version}]?api-version=…`: without a bearer token, 401 with
 *   Key Vault's challenge (`WWW-Authenticate: Bearer authorization="<authority>", resource="https://vault.azure.net"`),
 *   which clients follow to get a token; with one, the token must be this emulator's, unexpired, for
 *   `https://vault.azure.net`, and its `oid` among the secret's readers (Key Vault's RBAC/access policy):
 *   otherwise 401 or 403 with Key Vault's error body. Unknown secrets: 404 `SecretNotFound`.
 * - `PUT /_emulator/keyvault/{vault}/secrets/{name}` `{ tenant, value, contentType, readers }`: stores one.
 *
 * The vault's URL is `<emulator>/keyvault/<vault>/`.
 */
export const VAULT_RESOURCE = "https://vault.azure.net";

interface StoredSecret {
  tenant: string;
  value: string;
  contentType?: string;
  readers: Set<string>;
  version: string;
}

function kvError(reply: FastifyReply, status: number, code: string, message: string, inner?: string) {
  return reply
    .code(status)
    .type("application/json; charset=utf-8")
    .send({ error: { code, message, ...(inner ? { innererror: { code: inner } } : {}) } });
}

export function registerKeyVaultRoutes(app: FastifyInstance, ctx: TokenContext): void {
  const vaults = new Map<string, Map<string, StoredSecret>>();

  app.put<{
    Params: { vault: string; name: string };
    Body: { tenant: string; value: string; contentType?: string; readers: string[] };
  }>(
    "/_emulator/keyvault/:vault/secrets/:name",
    {
      schema: {
        body: {
          type: "object",
          required: ["tenant", "value", "readers"],
          additionalProperties: false,
          properties: {
            tenant: { type: "string" },
            value: { type: "string" },
            contentType: { type: "string" },
            readers: { type: "array", items: { type: "string" } },
          },
        },
      },
    },
    async (request, reply) => {
      const tenant = ctx.store.tenant(request.body.tenant);
      if (!tenant)
        return kvError(reply, 400, "BadParameter", `tenant '${request.body.tenant}' does not exist`);
      const vault = vaults.get(request.params.vault) ?? new Map<string, StoredSecret>();
      vaults.set(request.params.vault, vault);
      vault.set(request.params.name.toLowerCase(), {
        tenant: tenant.id,
        value: request.body.value,
        ...(request.body.contentType ? { contentType: request.body.contentType } : {}),
        readers: new Set(request.body.readers.map((r) => r.toLowerCase())),
        version: crypto.randomUUID().replaceAll("-", ""),
      });
      return reply.code(204).send();
    },
  );

  const read = async (
    request: {
      params: { vault: string; name: string };
      query: Record<string, string | undefined>;
      headers: Record<string, string | string[] | undefined>;
    },
    reply: FastifyReply,
  ) => {
    const { vault: vaultName, name } = request.params;
    if (!request.query["api-version"])
      return kvError(
        reply,
        400,
        "BadParameter",
        "The request URI contains an invalid or missing api-version.",
      );
    const secret = vaults.get(vaultName)?.get(name.toLowerCase());
    const firstTenant = ctx.store.spec.tenants[0]?.id ?? "common";
    const authority = `${ctx.baseUrl}/${secret?.tenant ?? firstTenant}`;
    const auth = request.headers.authorization;
    const token = typeof auth === "string" ? /^Bearer\s+(\S+)$/i.exec(auth)?.[1] : undefined;
    if (!token) {
      reply.header("www-authenticate", `Bearer authorization="${authority}", resource="${VAULT_RESOURCE}"`);
      return kvError(reply, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.");
    }
    let payload: ReturnType<typeof decodeUntrusted>["payload"];
    try {
      payload = decodeUntrusted(token, "the bearer token").payload;
    } catch {
      return kvError(reply, 401, "Unauthorized", "AKV10032: Invalid token.");
    }
    const issuerTenant = ownIssuerTenant(ctx.baseUrl, payload.iss);
    const valid =
      issuerTenant !== undefined &&
      (await ownSignatureValid(ctx.keys, issuerTenant, token)) &&
      typeof payload.exp === "number" &&
      payload.exp > ctx.now() &&
      audiences(payload).some((a) => a.replace(/\/$/, "") === VAULT_RESOURCE);
    if (!valid) {
      reply.header("www-authenticate", `Bearer authorization="${authority}", resource="${VAULT_RESOURCE}"`);
      return kvError(
        reply,
        401,
        "Unauthorized",
        "AKV10022: Invalid audience, issuer, signature or lifetime.",
      );
    }
    if (!secret)
      return kvError(
        reply,
        404,
        "SecretNotFound",
        `A secret with (name/id) ${name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command.`,
      );
    const oid = typeof payload.oid === "string" ? payload.oid.toLowerCase() : "";
    if (issuerTenant !== secret.tenant || !secret.readers.has(oid))
      return kvError(
        reply,
        403,
        "Forbidden",
        `Caller is not authorized to perform action on resource.\r\nCaller: appid=${String(payload.appid ?? payload.azp ?? "")};oid=${oid}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nVault: ${vaultName}`,
        "ForbiddenByRbac",
      );
    const id = `${ctx.baseUrl}/keyvault/${vaultName}/secrets/${name}/${secret.version}`;
    return reply.type("application/json; charset=utf-8").send({
      value: secret.value,
      ...(secret.contentType ? { contentType: secret.contentType } : {}),
      id,
      managed: true,
      kid: `${ctx.baseUrl}/keyvault/${vaultName}/keys/${name}/${secret.version}`,
      attributes: { enabled: true, recoveryLevel: "Recoverable+Purgeable" },
    });
  };
  app.get<{ Params: { vault: string; name: string }; Querystring: Record<string, string | undefined> }>(
    "/keyvault/:vault/secrets/:name",
    read,
  );
  app.get<{
    Params: { vault: string; name: string; version: string };
    Querystring: Record<string, string | undefined>;
  }>("/keyvault/:vault/secrets/:name/:version", read);
}
