import type { FastifyInstance } from "fastify";
import type { JWTPayload } from "jose";
import type { TokenContext } from "../context.ts";
import { type AgentIdentitySpec, DirectoryError, randomGuid, type TenantSpec } from "../directory.ts";
import { authenticate, callerAppId, graphError, rolesOf } from "./graph.ts";

/**
 * Microsoft Graph's agent identities (beta): create one under a blueprint
 * (`POST /servicePrincipals/microsoft.graph.agentIdentity`) and delete one
 * (`DELETE /servicePrincipals/{id}`), with Graph's permissions and error shapes. A created agent is a
 * full agent identity of the directory: its blueprint can get tokens for it at once.
 *
 * Permissions (Learn, "Create agentIdentity" / "Delete agentIdentity", application permissions):
 * create needs AgentIdentity.Create.All (or AgentIdentity.ReadWrite.All) for any blueprint, or
 * AgentIdentity.CreateAsManager for the caller's own blueprint (the blueprint acting for itself) or one
 * it owns; delete needs AgentIdentity.DeleteRestore.All, or AgentIdentity.CreateAsManager for an agent
 * of such a blueprint. List (`GET /servicePrincipals/microsoft.graph.agentIdentity`) needs
 * AgentIdentity.Read.All (or ReadWrite.All, or Application.Read.All); with only CreateAsManager it lists the
 * agents of blueprints the caller manages, as its Get does. `$filter` supports exactly what Graph supports
 * on `tags` (`tags/any(t:t eq 'value')`); any other property is Graph's 400 Request_UnsupportedQuery, and
 * a clause that does not parse its 400 BadRequest.
 */

function managesBlueprint(t: TenantSpec, payload: JWTPayload, blueprintAppId: string): boolean {
  const caller = callerAppId(payload);
  if (!caller) return false;
  if (caller === blueprintAppId.toLowerCase()) return true;
  const blueprint = t.applications?.find((a) => a.appId.toLowerCase() === blueprintAppId.toLowerCase());
  return (blueprint?.owners ?? []).includes(caller);
}

export function mayCreateAgent(t: TenantSpec, payload: JWTPayload, blueprintAppId: string): boolean {
  const roles = rolesOf(payload);
  if (roles.includes("AgentIdentity.Create.All") || roles.includes("AgentIdentity.ReadWrite.All"))
    return true;
  return roles.includes("AgentIdentity.CreateAsManager") && managesBlueprint(t, payload, blueprintAppId);
}

export function mayDeleteAgent(t: TenantSpec, payload: JWTPayload, agent: AgentIdentitySpec): boolean {
  const roles = rolesOf(payload);
  if (roles.includes("AgentIdentity.DeleteRestore.All")) return true;
  return (
    roles.includes("AgentIdentity.CreateAsManager") && managesBlueprint(t, payload, agent.blueprintAppId)
  );
}

const DENIED = "Insufficient privileges to complete the operation.";

function notFound(id: string): string {
  return `Resource '${id}' does not exist or one of its queried reference-property objects are not present.`;
}

function agentEntity(ctx: TokenContext, version: string, agent: AgentIdentitySpec) {
  return {
    "@odata.context": `${ctx.baseUrl}/${version}/$metadata#servicePrincipals/microsoft.graph.agentIdentity/$entity`,
    "@odata.type": "#microsoft.graph.agentIdentity",
    id: agent.servicePrincipalId,
    appId: agent.appId,
    displayName: agent.displayName,
    agentIdentityBlueprintId: agent.blueprintAppId,
    servicePrincipalType: "ServiceIdentity",
    accountEnabled: true,
    ...(agent.createdByAppId ? { createdByAppId: agent.createdByAppId } : {}),
    tags: agent.tags ?? [],
  };
}

/** A parsed `$filter`: a tag to match, or Graph's refusal (status, code, message). */
export type TagFilter =
  | { ok: true; tag?: string }
  | { ok: false; status: 400; code: "Request_UnsupportedQuery" | "BadRequest"; message: string };

/**
 * Graph's lambda filter on a string collection, `tags/any(t:t eq 'value')` (any range variable; a quote
 * inside the value doubled, as OData writes it). Nothing else is supported here.
 */
export function parseTagFilter(filter: string | undefined): TagFilter {
  if (filter === undefined) return { ok: true };
  const any = /^\s*tags\/any\(\s*(\w+)\s*:\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*\)\s*$/i.exec(filter);
  if (any && any[1] === any[2]) return { ok: true, tag: (any[3] ?? "").replaceAll("''", "'") };
  const property = /^\s*([A-Za-z_][\w/]*)\s*(?:\/any\(|\s(?:eq|ne|gt|ge|lt|le|in|startsWith)\b)/.exec(filter);
  const name = property?.[1]?.split("/")[0];
  if (name && name.toLowerCase() !== "tags")
    return {
      ok: false,
      status: 400,
      code: "Request_UnsupportedQuery",
      message: `Unsupported or invalid query filter clause specified for property '${name}' of resource 'ServicePrincipal'.`,
    };
  return { ok: false, status: 400, code: "BadRequest", message: `Invalid filter clause: ${filter}` };
}

export function registerGraphAgentRoutes(app: FastifyInstance, ctx: TokenContext): void {
  for (const version of ["beta", "v1.0"]) {
    app.post(
      `/${version}/servicePrincipals/microsoft.graph.agentIdentity`,
      { schema: { body: { type: "object" } } },
      async (request, reply) => {
        const auth = await authenticate(ctx, request);
        if ("error" in auth) return graphError(reply, auth.status, auth.code, auth.error);
        const body = (request.body ?? {}) as Record<string, unknown>;
        const { displayName, agentIdentityBlueprintId, tags } = body;
        if (tags !== undefined && (!Array.isArray(tags) || !tags.every((x) => typeof x === "string")))
          return graphError(
            reply,
            400,
            "Request_BadRequest",
            "Invalid value specified for property 'tags' of resource 'ServicePrincipal'.",
          );
        if (typeof displayName !== "string" || displayName.trim() === "")
          return graphError(
            reply,
            400,
            "Request_BadRequest",
            "Property 'displayName' is required and cannot be empty.",
          );
        if (typeof agentIdentityBlueprintId !== "string")
          return graphError(
            reply,
            400,
            "Request_BadRequest",
            "Property 'agentIdentityBlueprintId' is required.",
          );
        const t = auth.tenant;
        const blueprint = t.applications?.find(
          (a) =>
            a.appId.toLowerCase() === agentIdentityBlueprintId.toLowerCase() &&
            a.kind === "agentIdentityBlueprint",
        );
        if (!mayCreateAgent(t, auth.payload, agentIdentityBlueprintId))
          return graphError(reply, 403, "Authorization_RequestDenied", DENIED);
        if (!blueprint)
          return graphError(
            reply,
            400,
            "Request_BadRequest",
            `Invalid value specified for property 'agentIdentityBlueprintId': '${agentIdentityBlueprintId}' is not an agent identity blueprint.`,
          );
        const caller = callerAppId(auth.payload);
        // An agent identity's object id and app id are the same value (Learn, agent-identities).
        const id = randomGuid();
        const agent: AgentIdentitySpec = {
          appId: id,
          servicePrincipalId: id,
          displayName,
          blueprintAppId: blueprint.appId,
          ...(caller ? { createdByAppId: caller } : {}),
          ...(tags !== undefined ? { tags: tags as string[] } : {}),
        };
        try {
          ctx.store.add(t.id, "agentIdentities", agent);
        } catch (error) {
          if (error instanceof DirectoryError)
            return graphError(reply, 400, "Request_BadRequest", error.message);
          throw error;
        }
        ctx.logger.info(
          { tenant: t.id, blueprint: blueprint.appId, agent: agent.appId, by: caller },
          "graph: agent identity created",
        );
        return reply.code(201).send(agentEntity(ctx, version, agent));
      },
    );

    app.get<{ Querystring: Record<string, string | undefined> }>(
      `/${version}/servicePrincipals/microsoft.graph.agentIdentity`,
      async (request, reply) => {
        const auth = await authenticate(ctx, request);
        if ("error" in auth) return graphError(reply, auth.status, auth.code, auth.error);
        const roles = rolesOf(auth.payload);
        const readsAll = roles.some((r) =>
          ["AgentIdentity.Read.All", "Application.Read.All", "AgentIdentity.ReadWrite.All"].includes(r),
        );
        if (!readsAll && !roles.includes("AgentIdentity.CreateAsManager"))
          return graphError(reply, 403, "Authorization_RequestDenied", DENIED);
        const filter = parseTagFilter(request.query.$filter);
        if (!filter.ok) return graphError(reply, filter.status, filter.code, filter.message);
        const value = (auth.tenant.agentIdentities ?? [])
          .filter((a) => readsAll || managesBlueprint(auth.tenant, auth.payload, a.blueprintAppId))
          // Graph compares string values in filters case-insensitively.
          .filter(
            (a) =>
              filter.tag === undefined ||
              (a.tags ?? []).some((t) => t.toLowerCase() === filter.tag?.toLowerCase()),
          )
          .map((a) => {
            const { "@odata.context": _context, ...entity } = agentEntity(ctx, version, a);
            return entity;
          });
        return {
          "@odata.context": `${ctx.baseUrl}/${version}/$metadata#servicePrincipals/microsoft.graph.agentIdentity`,
          value,
        };
      },
    );

    const byId = `/${version}/servicePrincipals/:id`;
    const params = { type: "object", properties: { id: { type: "string", maxLength: 64 } } };
    app.get<{ Params: { id: string } }>(byId, { schema: { params } }, async (request, reply) => {
      const auth = await authenticate(ctx, request);
      if ("error" in auth) return graphError(reply, auth.status, auth.code, auth.error);
      const id = request.params.id.toLowerCase();
      const agent = auth.tenant.agentIdentities?.find((a) => a.servicePrincipalId?.toLowerCase() === id);
      const roles = rolesOf(auth.payload);
      const mayRead =
        roles.some((r) =>
          ["AgentIdentity.Read.All", "Application.Read.All", "AgentIdentity.ReadWrite.All"].includes(r),
        ) ||
        (agent !== undefined &&
          roles.includes("AgentIdentity.CreateAsManager") &&
          managesBlueprint(auth.tenant, auth.payload, agent.blueprintAppId));
      if (!mayRead) return graphError(reply, 403, "Authorization_RequestDenied", DENIED);
      if (!agent) return graphError(reply, 404, "Request_ResourceNotFound", notFound(request.params.id));
      return agentEntity(ctx, version, agent);
    });
    app.delete<{ Params: { id: string } }>(byId, { schema: { params } }, async (request, reply) => {
      const auth = await authenticate(ctx, request);
      if ("error" in auth) return graphError(reply, auth.status, auth.code, auth.error);
      const id = request.params.id.toLowerCase();
      const agent = auth.tenant.agentIdentities?.find((a) => a.servicePrincipalId?.toLowerCase() === id);
      if (!agent) {
        // Without a delete permission Graph refuses before it looks; with one, a missing object is a 404.
        const roles = rolesOf(auth.payload);
        if (
          !roles.includes("AgentIdentity.DeleteRestore.All") &&
          !roles.includes("AgentIdentity.CreateAsManager")
        )
          return graphError(reply, 403, "Authorization_RequestDenied", DENIED);
        return graphError(reply, 404, "Request_ResourceNotFound", notFound(request.params.id));
      }
      if (!mayDeleteAgent(auth.tenant, auth.payload, agent))
        return graphError(reply, 403, "Authorization_RequestDenied", DENIED);
      ctx.store.removeAgentIdentity(auth.tenant.id, id);
      ctx.logger.info({ tenant: auth.tenant.id, agent: agent.appId }, "graph: agent identity deleted");
      return reply.code(204).send();
    });
  }
}
