import {
  type ApplicationSpec,
  DirectoryError,
  type DirectorySpec,
  derivedGuid,
  federatedCredentialProblem,
  findResourceFields,
  type GrantSpec,
  isGuid,
  isObject,
  isStringList,
  MAX_FEDERATED_CREDENTIALS,
  type ResourceFields,
  type TenantSpec,
  type UserSpec,
} from "./directory.ts";
import { checkKeyCredentials } from "./key-credentials.ts";

/**
 * Checks a directory and fills in derived ids. Throws DirectoryError listing every problem with its
 * path, so a wrong file is fixed in one pass. Returns a new object; the input is not changed.
 */
export function normalizeDirectory(input: unknown): DirectorySpec {
  const problems: string[] = [];
  if (!isObject(input) || !Array.isArray(input.tenants)) {
    throw new DirectoryError("directory: must be an object with a 'tenants' list");
  }
  const spec = structuredClone(input) as unknown as DirectorySpec;
  const tenantIds = new Set<string>();
  spec.tenants.forEach((tenant, i) => {
    const at = `tenants[${i}]`;
    if (!isObject(tenant)) {
      problems.push(`${at}: must be an object`);
      return;
    }
    if (typeof tenant.id !== "string" || !isGuid(tenant.id)) problems.push(`${at}.id: must be a GUID`);
    else if (tenantIds.has(tenant.id.toLowerCase())) problems.push(`${at}.id: duplicate tenant ${tenant.id}`);
    else tenantIds.add(tenant.id.toLowerCase());
    checkTenant(tenant, at, problems);
  });
  if (problems.length > 0) throw new DirectoryError(`invalid directory:\n  ${problems.join("\n  ")}`);
  for (const tenant of spec.tenants) lowercaseIds(tenant);
  return spec;
}

/** Entra writes GUIDs in lower case in tokens and Graph; a directory file may not. */
function lowercaseIds(t: TenantSpec): void {
  const lower = (v: string | undefined) => (v !== undefined && isGuid(v) ? v.toLowerCase() : v);
  t.id = t.id.toLowerCase();
  for (const a of t.applications ?? []) {
    a.appId = a.appId.toLowerCase();
    a.objectId = lower(a.objectId);
    a.servicePrincipalId = lower(a.servicePrincipalId);
    if (a.owners) a.owners = a.owners.map((o) => o.toLowerCase());
  }
  for (const r of t.resources ?? []) {
    r.appId = r.appId.toLowerCase();
    r.servicePrincipalId = lower(r.servicePrincipalId);
  }
  for (const a of t.agentIdentities ?? []) {
    a.appId = a.appId.toLowerCase();
    a.blueprintAppId = a.blueprintAppId.toLowerCase();
    a.servicePrincipalId = lower(a.servicePrincipalId);
  }
  for (const u of [...(t.users ?? []), ...(t.agentUsers ?? [])]) u.objectId = u.objectId.toLowerCase();
  for (const u of t.agentUsers ?? []) u.agentIdentityAppId = u.agentIdentityAppId.toLowerCase();
  for (const g of t.grants ?? []) {
    g.clientAppId = g.clientAppId.toLowerCase();
    g.resource = lower(g.resource) ?? g.resource;
    if (g.type === "delegated") g.principalId = lower(g.principalId);
  }
}

function checkTenant(t: TenantSpec, at: string, problems: string[]): void {
  for (const key of [
    "applications",
    "agentIdentities",
    "users",
    "agentUsers",
    "resources",
    "grants",
  ] as const) {
    if (t[key] === undefined) t[key] = [];
    else if (!Array.isArray(t[key])) problems.push(`${at}.${key}: must be a list`);
  }
  if (t.domains !== undefined && !isStringList(t.domains))
    problems.push(`${at}.domains: must be a list of strings`);
  if (problems.length > 0) return;
  const appIds = new Set<string>();
  const claimAppId = (appId: unknown, path: string): void => {
    if (typeof appId !== "string" || !isGuid(appId)) problems.push(`${path}.appId: must be a GUID`);
    else if (appIds.has(appId.toLowerCase()))
      problems.push(`${path}.appId: ${appId} is used twice in the tenant`);
    else appIds.add(appId.toLowerCase());
  };
  t.applications?.forEach((app, i) => {
    const p = `${at}.applications[${i}]`;
    claimAppId(app.appId, p);
    if (
      app.kind !== undefined &&
      !["application", "agentIdentityBlueprint", "managedIdentity"].includes(app.kind)
    ) {
      problems.push(`${p}.kind: must be 'application', 'agentIdentityBlueprint' or 'managedIdentity'`);
    }
    checkResourceFields(app, p, problems);
    if (app.owners !== undefined && (!isStringList(app.owners) || !app.owners.every(isGuid)))
      problems.push(`${p}.owners: must be a list of application ids (GUIDs)`);
    checkInheritablePermissions(t, app, p, problems);
    app.objectId ??= derivedGuid(`app:${t.id}:${app.appId}`);
    app.servicePrincipalId ??= derivedGuid(`sp:${t.id}:${app.appId}`);
    app.displayName ??= `app ${app.appId}`;
    app.clientSecrets ??= [];
    app.federatedIdentityCredentials ??= [];
    app.keyCredentials ??= [];
    if (!Array.isArray(app.keyCredentials)) problems.push(`${p}.keyCredentials: must be a list`);
    else checkKeyCredentials(app.keyCredentials, String(app.appId).toLowerCase(), p, problems);
    app.clientSecrets.forEach((s, j) => {
      if (!isObject(s) || typeof s.value !== "string" || s.value.length < 8) {
        problems.push(`${p}.clientSecrets[${j}].value: must be a string of at least 8 characters`);
      }
    });
    if (app.federatedIdentityCredentials.length > MAX_FEDERATED_CREDENTIALS) {
      problems.push(
        `${p}.federatedIdentityCredentials: at most ${MAX_FEDERATED_CREDENTIALS} per application`,
      );
    }
    const names = new Set<string>();
    app.federatedIdentityCredentials.forEach((f, j) => {
      const fp = `${p}.federatedIdentityCredentials[${j}]`;
      const problem = federatedCredentialProblem(f);
      if (problem) problems.push(`${fp}: ${problem}`);
      else if (names.has(f.name.toLowerCase())) problems.push(`${fp}.name: '${f.name}' is used twice`);
      else names.add(f.name.toLowerCase());
      f.id ??= derivedGuid(`fic:${app.appId}:${f.name}`);
    });
  });
  t.resources?.forEach((r, i) => {
    const p = `${at}.resources[${i}]`;
    claimAppId(r.appId, p);
    checkResourceFields(r, p, problems);
    r.servicePrincipalId ??= derivedGuid(`sp:${t.id}:${r.appId}`);
    r.displayName ??= `resource ${r.appId}`;
  });
  const blueprints = new Set(
    (t.applications ?? [])
      .filter((a) => a.kind === "agentIdentityBlueprint")
      .map((a) => a.appId.toLowerCase()),
  );
  t.agentIdentities?.forEach((a, i) => {
    const p = `${at}.agentIdentities[${i}]`;
    claimAppId(a.appId, p);
    if (typeof a.blueprintAppId !== "string" || !blueprints.has(a.blueprintAppId.toLowerCase())) {
      problems.push(
        `${p}.blueprintAppId: '${String(a.blueprintAppId)}' is not an agentIdentityBlueprint application of this tenant`,
      );
    }
    // Learn (agent-identities): an agent identity's object id and app id are the same value.
    if (
      a.servicePrincipalId !== undefined &&
      String(a.servicePrincipalId).toLowerCase() !== String(a.appId).toLowerCase()
    )
      problems.push(`${p}.servicePrincipalId: an agent identity's object id is its app id (leave it out)`);
    a.servicePrincipalId = a.appId;
    if ("inheritDelegatedPermissions" in a)
      problems.push(
        `${p}.inheritDelegatedPermissions: no longer supported; list the resource in the blueprint's inheritablePermissions (as Entra does)`,
      );
    if (a.tags !== undefined && (!Array.isArray(a.tags) || !a.tags.every((x) => typeof x === "string")))
      problems.push(`${p}.tags: must be a list of strings`);
    a.displayName ??= `agent ${a.appId}`;
  });
  const userIds = new Set<string>();
  const checkUser = (u: UserSpec, p: string): void => {
    if (typeof u.objectId !== "string" || !isGuid(u.objectId)) problems.push(`${p}.objectId: must be a GUID`);
    else if (userIds.has(u.objectId.toLowerCase()))
      problems.push(`${p}.objectId: ${u.objectId} is used twice`);
    else userIds.add(u.objectId.toLowerCase());
    if (typeof u.userPrincipalName !== "string" || !u.userPrincipalName.includes("@")) {
      problems.push(`${p}.userPrincipalName: must look like name@domain`);
    }
    u.displayName ??= u.userPrincipalName;
  };
  t.users?.forEach((u, i) => {
    checkUser(u, `${at}.users[${i}]`);
  });
  const agentIds = new Set((t.agentIdentities ?? []).map((a) => String(a.appId).toLowerCase()));
  t.agentUsers?.forEach((u, i) => {
    const p = `${at}.agentUsers[${i}]`;
    checkUser(u, p);
    if (typeof u.agentIdentityAppId !== "string" || !agentIds.has(u.agentIdentityAppId.toLowerCase())) {
      problems.push(
        `${p}.agentIdentityAppId: '${String(u.agentIdentityAppId)}' is not an agent identity of this tenant`,
      );
    }
  });
  t.grants?.forEach((g, i) => {
    checkGrant(t, g, `${at}.grants[${i}]`, appIds, userIds, problems);
  });
}

function checkGrant(
  t: TenantSpec,
  g: GrantSpec,
  p: string,
  appIds: Set<string>,
  userIds: Set<string>,
  problems: string[],
): void {
  if (!isObject(g) || (g.type !== "application" && g.type !== "delegated")) {
    problems.push(`${p}.type: must be 'application' or 'delegated'`);
    return;
  }
  if (typeof g.clientAppId !== "string" || !appIds.has(g.clientAppId.toLowerCase())) {
    problems.push(`${p}.clientAppId: '${String(g.clientAppId)}' is not an app of this tenant`);
  }
  const resource = typeof g.resource === "string" ? findResourceFields(t, g.resource) : undefined;
  if (!resource) {
    problems.push(
      `${p}.resource: '${String(g.resource)}' is not a resource (app id or identifier URI) of this tenant`,
    );
    return;
  }
  if (g.type === "application") {
    if (!isStringList(g.roles)) problems.push(`${p}.roles: must be a list of strings`);
    else
      for (const r of g.roles)
        if (!resource.appRoles?.includes(r))
          problems.push(`${p}.roles: '${r}' is not an app role of ${g.resource}`);
  } else {
    if (!isStringList(g.scopes)) problems.push(`${p}.scopes: must be a list of strings`);
    else
      for (const s of g.scopes)
        if (!resource.scopes?.includes(s))
          problems.push(`${p}.scopes: '${s}' is not a delegated scope of ${g.resource}`);
    if (g.principalId !== undefined && !userIds.has(String(g.principalId).toLowerCase())) {
      problems.push(`${p}.principalId: '${String(g.principalId)}' is not a user of this tenant`);
    }
  }
}

function checkResourceFields(r: ResourceFields, p: string, problems: string[]): void {
  for (const key of ["identifierUris", "appRoles", "scopes"] as const) {
    if (r[key] !== undefined && !isStringList(r[key]))
      problems.push(`${p}.${key}: must be a list of strings`);
  }
  if (r.audience !== undefined && typeof r.audience !== "string")
    problems.push(`${p}.audience: must be a string`);
  const version = r.requestedAccessTokenVersion;
  if (version !== undefined && version !== null && version !== 1 && version !== 2)
    problems.push(`${p}.requestedAccessTokenVersion: must be 1, 2 or null`);
  const optional = r.optionalClaims;
  if (optional !== undefined) {
    const list = isObject(optional) ? optional.accessToken : undefined;
    const ok =
      list === undefined ||
      (Array.isArray(list) &&
        list.every(
          (c) =>
            isObject(c) &&
            typeof c.name === "string" &&
            (c.additionalProperties === undefined || isStringList(c.additionalProperties)),
        ));
    if (!isObject(optional) || !ok)
      problems.push(`${p}.optionalClaims: must be {accessToken: [{name, additionalProperties?}]}`);
  }
}

const SCOPE_KINDS = ["allAllowed", "enumerated", "none"];
const ROLE_KINDS = ["allAllowed", "none"];

/** Graph's inheritablePermissions: blueprints only, one entry per resource, enumerated scopes must exist. */
function checkInheritablePermissions(
  t: TenantSpec,
  app: ApplicationSpec,
  p: string,
  problems: string[],
): void {
  const list = app.inheritablePermissions;
  if (list === undefined) return;
  if (app.kind !== "agentIdentityBlueprint") {
    problems.push(`${p}.inheritablePermissions: only an agentIdentityBlueprint has inheritable permissions`);
    return;
  }
  if (!Array.isArray(list)) {
    problems.push(`${p}.inheritablePermissions: must be a list`);
    return;
  }
  const seen = new Set<string>();
  list.forEach((entry, i) => {
    const ep = `${p}.inheritablePermissions[${i}]`;
    if (!isObject(entry) || typeof entry.resourceAppId !== "string") {
      problems.push(`${ep}.resourceAppId: must be a string`);
      return;
    }
    const resource = findResourceFields(t, entry.resourceAppId);
    if (!resource) {
      problems.push(`${ep}.resourceAppId: '${entry.resourceAppId}' is not a resource of this tenant`);
      return;
    }
    if (seen.has(resource.appId.toLowerCase())) problems.push(`${ep}.resourceAppId: listed twice`);
    seen.add(resource.appId.toLowerCase());
    const scopes = entry.inheritableScopes;
    if (scopes !== undefined) {
      if (!isObject(scopes) || !SCOPE_KINDS.includes(String(scopes.kind)))
        problems.push(`${ep}.inheritableScopes.kind: must be one of ${SCOPE_KINDS.join(", ")}`);
      else if (scopes.kind === "enumerated") {
        if (!isStringList(scopes.scopes))
          problems.push(`${ep}.inheritableScopes.scopes: must be a list of strings`);
        else
          for (const s of scopes.scopes)
            if (!resource.scopes?.includes(s))
              problems.push(
                `${ep}.inheritableScopes.scopes: '${s}' is not a delegated scope of ${entry.resourceAppId}`,
              );
      }
    }
    const roles = entry.inheritableRoles;
    if (roles !== undefined && (!isObject(roles) || !ROLE_KINDS.includes(String(roles.kind))))
      problems.push(`${ep}.inheritableRoles.kind: must be one of ${ROLE_KINDS.join(", ")}`);
  });
}

/** Why a federated identity credential is unacceptable, or undefined when it is fine (Graph's rules). */
