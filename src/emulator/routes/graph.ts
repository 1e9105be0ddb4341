import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { JWTPayload } from "jose";
import type { TokenContext } from "../context.ts";
import { type ApplicationSpec, DirectoryError, type TenantSpec } from "../directory.ts";
import { audiences, decodeUntrusted, ownIssuerTenant, ownSignatureValid } from "../own-tokens.ts";
import { findApp } from "../store.ts";

export const GRAPH_AUDIENCES = ["https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"];

/**
 * Whether a caller with these app roles may read or change an application's federated credentials, as
 * Graph decides it: Application.ReadWrite.All any application; AgentIdentityBlueprint.AddRemoveCreds.All
 * any agent identity blueprint; Application.ReadWrite.OwnedBy only the applications the caller owns;
 * Application.Read.All reads only.
 */
export function mayManageCredentials(
  method: string,
  roles: readonly string[],
  application: ApplicationSpec,
  callerAppId: string | undefined,
): boolean {
  const write = method !== "GET";
  if (roles.includes("Application.ReadWrite.All")) return true;
  if (
    roles.includes("AgentIdentityBlueprint.AddRemoveCreds.All") &&
    application.kind === "agentIdentityBlueprint"
  )
    return true;
  if (
    roles.includes("Application.ReadWrite.OwnedBy") &&
    callerAppId !== undefined &&
    (application.owners ?? []).includes(callerAppId.toLowerCase())
  )
    return true;
  return !write && roles.includes("Application.Read.All");
}

/** The calling application of an app-only Graph token (azp in v2 tokens, appid in v1). */
export function callerAppId(payload: JWTPayload): string | undefined {
  const id = payload.azp ?? payload.appid;
  return typeof id === "string" ? id.toLowerCase() : undefined;
}

export function rolesOf(payload: JWTPayload): string[] {
  return Array.isArray(payload.roles) ? (payload.roles as string[]) : [];
}

/** `applications/{objectId}` or `applications(appId='{appId}')`, then the FIC collection and an optional item. */
const PATH =
  /^\/(v1\.0|beta)\/applications(?:\/([0-9a-fA-F-]{36})|\(appId='([0-9a-fA-F-]{36})'\))\/federatedIdentityCredentials(?:\/([^/?]+))?\/?(?:\?.*)?$/;

/** Graph's error body. */
export function graphError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({
    error: {
      code,
      message,
      innerError: {
        date: new Date().toISOString().slice(0, 19),
        "request-id": randomUUID(),
        "client-request-id": randomUUID(),
      },
    },
  });
}

/**
 * The Graph subset the operator uses: list, create, get and delete an application's federated identity
 * credentials (agent identities are in graph-agents.ts). Authorization as Graph's: see mayManageCredentials.
 */
export function registerGraphRoutes(app: FastifyInstance, ctx: TokenContext): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // Clients differ in what they percent-encode (`'`, `(`, `)`); match on the decoded path.
    const match = PATH.exec(decodePath(request.url));
    if (!match)
      return graphError(
        reply,
        400,
        "BadRequest",
        `Resource not found for the segment '${request.url.split("?")[0]}'.`,
      );
    const [, version, objectId, appId, item] = match;
    const auth = await authenticate(ctx, request);
    if ("error" in auth) return graphError(reply, auth.status, auth.code, auth.error);
    const roles = rolesOf(auth.payload);
    const t = auth.tenant;
    const key = objectId ?? appId ?? "";
    let application: ReturnType<typeof findApp>;
    try {
      application = findApp(t, key);
      // Graph addresses an application by object id, or by app id only in the applications(appId='...') form.
      const matches = objectId
        ? application.objectId?.toLowerCase() === objectId.toLowerCase()
        : application.appId.toLowerCase() === key.toLowerCase();
      if (!matches) throw new DirectoryError(`no application ${key}`);
    } catch {
      return graphError(
        reply,
        404,
        "Request_ResourceNotFound",
        `Resource '${key}' does not exist or one of its queried reference-property objects are not present.`,
      );
    }
    if (!mayManageCredentials(request.method, roles, application, callerAppId(auth.payload))) {
      return graphError(
        reply,
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
      );
    }
    const context = `${ctx.baseUrl}/${version}/$metadata#applications('${application.objectId}')/federatedIdentityCredentials`;
    const fics = application.federatedIdentityCredentials ?? [];
    const findItem = () => fics.find((f) => f.id === item || f.name === item);
    if (request.method === "GET" && item === undefined) return { "@odata.context": context, value: fics };
    if (request.method === "GET") {
      const fic = findItem();
      if (!fic)
        return graphError(
          reply,
          404,
          "Request_ResourceNotFound",
          `Resource '${item}' does not exist or one of its queried reference-property objects are not present.`,
        );
      return { "@odata.context": `${context}/$entity`, ...fic };
    }
    if (request.method === "POST" && item === undefined) {
      try {
        const {
          name,
          issuer,
          subject,
          audiences: auds,
          description,
        } = (request.body ?? {}) as Record<string, unknown>;
        const created = ctx.store.addFederatedCredential(t.id, application.appId, {
          name,
          issuer,
          subject,
          audiences: auds,
          description,
        });
        ctx.logger.info(
          {
            tenant: t.id,
            appId: application.appId,
            fic: created.name,
            issuer: created.issuer,
            subject: created.subject,
          },
          "graph: federated credential created",
        );
        return reply.code(201).send({ "@odata.context": `${context}/$entity`, ...created });
      } catch (error) {
        if (error instanceof DirectoryError)
          return graphError(reply, 400, "Request_BadRequest", error.message);
        throw error;
      }
    }
    if (request.method === "DELETE" && item !== undefined) {
      const fic = findItem();
      if (!fic || !ctx.store.removeFederatedCredential(t.id, application.appId, fic.id ?? fic.name)) {
        return graphError(
          reply,
          404,
          "Request_ResourceNotFound",
          `Resource '${item}' does not exist or one of its queried reference-property objects are not present.`,
        );
      }
      ctx.logger.info(
        { tenant: t.id, appId: application.appId, fic: fic.name },
        "graph: federated credential deleted",
      );
      return reply.code(204).send();
    }
    return graphError(reply, 405, "Request_BadRequest", `The method ${request.method} is not allowed here.`);
  };
  for (const version of ["v1.0", "beta"]) {
    const params = { type: "object", properties: { "*": { type: "string", maxLength: 2048 } } };
    app.route({ method: ["GET", "DELETE"], url: `/${version}/*`, schema: { params }, handler });
    app.route({
      method: "POST",
      url: `/${version}/*`,
      schema: { params, body: { type: "object" } },
      handler,
    });
  }
}

function decodePath(url: string): string {
  const path = url.split("?")[0] ?? "";
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

type GraphAuth =
  | { payload: JWTPayload; tenant: TenantSpec }
  | { status: number; code: string; error: string };

export async function authenticate(ctx: TokenContext, request: FastifyRequest): Promise<GraphAuth> {
  const header = request.headers.authorization ?? "";
  const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
  const invalid = (why: string): GraphAuth => ({
    status: 401,
    code: "InvalidAuthenticationToken",
    error: why,
  });
  if (!token) return invalid("Access token is empty.");
  let payload: JWTPayload;
  try {
    payload = decodeUntrusted(token, "access token").payload;
  } catch {
    return invalid("IDX14100: JWT is not well formed.");
  }
  const tenantId = ownIssuerTenant(ctx.baseUrl, payload.iss);
  const tenant = tenantId ? ctx.store.tenant(tenantId) : undefined;
  if (!tenant || !(await ownSignatureValid(ctx.keys, tenant.id, token)))
    return invalid("Access token validation failure.");
  if (typeof payload.exp !== "number" || payload.exp < ctx.now())
    return invalid("Lifetime validation failed, the token is expired.");
  if (!audiences(payload).some((a) => GRAPH_AUDIENCES.includes(a)))
    return invalid("Access token validation failure. Invalid audience.");
  return { payload, tenant };
}
