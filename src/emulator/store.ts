import {
  type AgentIdentitySpec,
  type ApplicationSpec,
  DirectoryError,
  type DirectorySpec,
  type FederatedCredentialSpec,
  federatedCredentialProblem,
  findResourceFields,
  MAX_FEDERATED_CREDENTIALS,
  type ResourceFields,
  randomGuid,
  type TenantSpec,
  type UserSpec,
} from "./directory.ts";
import { normalizeDirectory } from "./directory-validate.ts";
import { type KeyCredentialSpec, keyCredentialProblem } from "./key-credentials.ts";

/** The token exchange audience every federated credential and agent exchange token uses. */
export const TOKEN_EXCHANGE_RESOURCE = "api://AzureADTokenExchange";
/** Entra's app id of the token exchange resource. */
export const TOKEN_EXCHANGE_APP_ID = "fb60f99c-7a34-4190-8149-302f77469936";

/** A client that can ask for tokens: an ordinary app, a blueprint, or an agent identity. */
export type Client =
  | {
      kind: "application" | "agentIdentityBlueprint" | "managedIdentity";
      appId: string;
      oid: string;
      displayName: string;
      app: ApplicationSpec;
    }
  | {
      kind: "agentIdentity";
      appId: string;
      oid: string;
      displayName: string;
      agent: AgentIdentitySpec;
      blueprint: ApplicationSpec;
    };

export interface Resource extends ResourceFields {
  appId: string;
  displayName: string;
  /** The directory's `audience` or the app id (what Graph-side checks compare with). */
  audience: string;
  /** The directory's explicit `audience`, which every token's `aud` then carries (token-shape.ts). */
  audienceOverride?: string;
  /** Set when the resource is an application of the directory (a blueprint's tokens default to v2). */
  kind?: ApplicationSpec["kind"];
}

export type Collection = "applications" | "agentIdentities" | "users" | "agentUsers" | "resources" | "grants";

/**
 * The live directory behind the emulator. Every change goes through normalizeDirectory on a copy, so the
 * directory is always valid: a bad admin call fails with DirectoryError and changes nothing.
 */
export class DirectoryStore {
  #spec: DirectorySpec;
  /** When each federated credential added through the store was added (seconds), for the propagation delay. */
  readonly #ficAddedAt = new Map<string, number>();
  readonly #now: () => number;

  /** `now` (seconds since the epoch) dates federated credentials added later; tests pass their own clock. */
  constructor(
    spec: DirectorySpec = { tenants: [] },
    now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    this.#spec = normalizeDirectory(spec);
    this.#now = now;
  }

  get spec(): DirectorySpec {
    return this.#spec;
  }

  replace(spec: unknown): void {
    this.#spec = normalizeDirectory(spec);
  }

  /** By tenant id (any case) or one of its domains. */
  tenant(idOrDomain: string): TenantSpec | undefined {
    const key = idOrDomain.toLowerCase();
    return this.#spec.tenants.find(
      (t) => t.id.toLowerCase() === key || (t.domains ?? []).some((d) => d.toLowerCase() === key),
    );
  }

  client(t: TenantSpec, appId: string): Client | undefined {
    const key = appId.toLowerCase();
    const app = t.applications?.find((a) => a.appId.toLowerCase() === key);
    if (app) {
      return {
        kind: app.kind ?? "application",
        appId: app.appId,
        oid: app.servicePrincipalId ?? "",
        displayName: app.displayName ?? app.appId,
        app,
      };
    }
    const agent = t.agentIdentities?.find((a) => a.appId.toLowerCase() === key);
    const blueprint =
      agent && t.applications?.find((a) => a.appId.toLowerCase() === agent.blueprintAppId.toLowerCase());
    if (agent && blueprint) {
      return {
        kind: "agentIdentity",
        appId: agent.appId,
        // Learn (agent-identities): an agent identity's object id and app id are the same value.
        oid: agent.appId,
        displayName: agent.displayName ?? agent.appId,
        agent,
        blueprint,
      };
    }
    return undefined;
  }

  resource(t: TenantSpec, identifier: string): Resource | undefined {
    if (identifier.replace(/\/+$/, "").toLowerCase() === TOKEN_EXCHANGE_RESOURCE.toLowerCase()) {
      return {
        appId: TOKEN_EXCHANGE_APP_ID,
        displayName: "AzureADTokenExchange",
        audience: TOKEN_EXCHANGE_RESOURCE,
      };
    }
    if (identifier.toLowerCase() === TOKEN_EXCHANGE_APP_ID) return this.resource(t, TOKEN_EXCHANGE_RESOURCE);
    const r = findResourceFields(t, identifier);
    if (!r) return undefined;
    return {
      ...r,
      displayName: r.displayName ?? r.appId,
      audience: r.audience ?? r.appId,
      ...(r.audience !== undefined ? { audienceOverride: r.audience } : {}),
    };
  }

  /** A user or agent user by object id or UPN (any case). */
  user(t: TenantSpec, idOrUpn: string): (UserSpec & { agentIdentityAppId?: string }) | undefined {
    const key = idOrUpn.toLowerCase();
    return [...(t.users ?? []), ...(t.agentUsers ?? [])].find(
      (u) => u.objectId.toLowerCase() === key || u.userPrincipalName.toLowerCase() === key,
    );
  }

  /**
   * App roles of `resource` assigned to the client; an agent identity also gets its blueprint's roles on a
   * resource the blueprint lists as inheritable (Learn, concept-inheritable-permissions).
   */
  appRoles(t: TenantSpec, client: Client, resource: Resource): string[] {
    const own = (appId: string) => {
      const roles: string[] = [];
      for (const g of t.grants ?? []) {
        if (g.type !== "application" || !sameId(g.clientAppId, appId)) continue;
        if (this.resource(t, g.resource)?.appId !== resource.appId) continue;
        roles.push(...g.roles);
      }
      return roles;
    };
    const roles = new Set(own(client.appId));
    if (client.kind === "agentIdentity") {
      const rule = this.#inheritable(t, client.blueprint, resource)?.inheritableRoles;
      if (rule?.kind === "allAllowed") for (const r of own(client.blueprint.appId)) roles.add(r);
    }
    return [...roles];
  }

  /**
   * Delegated scopes of `resource` granted to the client for this user (or for all users); an agent identity
   * also gets the blueprint's granted scopes that the blueprint lists as inheritable for that resource.
   */
  delegatedScopes(t: TenantSpec, client: Client, userOid: string, resource: Resource): string[] {
    const own = (appId: string) => {
      const scopes: string[] = [];
      for (const g of t.grants ?? []) {
        if (g.type !== "delegated" || !sameId(appId, g.clientAppId)) continue;
        if (g.principalId !== undefined && !sameId(g.principalId, userOid)) continue;
        if (this.resource(t, g.resource)?.appId !== resource.appId) continue;
        scopes.push(...g.scopes);
      }
      return scopes;
    };
    const scopes = new Set(own(client.appId));
    if (client.kind === "agentIdentity") {
      const rule = this.#inheritable(t, client.blueprint, resource)?.inheritableScopes;
      for (const s of own(client.blueprint.appId)) {
        if (rule?.kind === "allAllowed" || (rule?.kind === "enumerated" && (rule.scopes ?? []).includes(s)))
          scopes.add(s);
      }
    }
    return [...scopes];
  }

  #inheritable(t: TenantSpec, blueprint: ApplicationSpec, resource: Resource) {
    return (blueprint.inheritablePermissions ?? []).find(
      (p) => this.resource(t, p.resourceAppId)?.appId === resource.appId,
    );
  }

  /**
   * Whether a federated credential has propagated: one added through the store less than `delaySeconds`
   * ago has not (Learn, workload-identity-federation-considerations: AADSTS70021 for minutes). Credentials
   * from the directory file or a replaced directory count as old.
   */
  federatedCredentialPropagated(appId: string, fic: FederatedCredentialSpec, delaySeconds: number): boolean {
    const added = this.#ficAddedAt.get(`${appId.toLowerCase()}|${fic.id ?? fic.name}`);
    return added === undefined || this.#now() >= added + delaySeconds;
  }

  /** Adds an object and returns it as stored (validated, derived ids filled in). */
  add(tenantId: string, collection: Collection, object: unknown): unknown {
    this.#mutate(tenantId, (t) => {
      (t[collection] as unknown[]).push(object);
    });
    const t = this.#spec.tenants.find((x) => x.id === tenantId.toLowerCase());
    return (t?.[collection] as unknown[] | undefined)?.at(-1);
  }

  addFederatedCredential(tenantId: string, appIdOrObjectId: string, fic: unknown): FederatedCredentialSpec {
    const problem = federatedCredentialProblem(fic);
    if (problem) throw new DirectoryError(`federated identity credential: ${problem}`);
    const f = { ...(fic as FederatedCredentialSpec) };
    f.id ??= randomGuid();
    this.#mutate(tenantId, (t) => {
      const app = findApp(t, appIdOrObjectId);
      app.federatedIdentityCredentials ??= [];
      const fics = app.federatedIdentityCredentials;
      if (fics.length >= MAX_FEDERATED_CREDENTIALS) {
        throw new DirectoryError(
          `application ${app.appId} already has ${MAX_FEDERATED_CREDENTIALS} federated identity credentials (the limit)`,
        );
      }
      if (fics.some((x) => x.name.toLowerCase() === f.name.toLowerCase())) {
        throw new DirectoryError(
          `a federated identity credential named '${f.name}' already exists on application ${app.appId}`,
        );
      }
      if (fics.some((x) => x.issuer === f.issuer && x.subject === f.subject)) {
        throw new DirectoryError(
          `a federated identity credential with the same issuer and subject already exists on application ${app.appId}`,
        );
      }
      fics.push(f);
      this.#ficAddedAt.set(`${app.appId.toLowerCase()}|${f.id ?? f.name}`, this.#now());
    });
    return f;
  }

  /** Removes an agent identity by its service principal (object) id or app id; false when there was none. */
  removeAgentIdentity(tenantId: string, id: string): boolean {
    const key = id.toLowerCase();
    let removed = false;
    this.#mutate(tenantId, (t) => {
      const before = t.agentIdentities ?? [];
      t.agentIdentities = before.filter(
        (a) => a.servicePrincipalId?.toLowerCase() !== key && a.appId.toLowerCase() !== key,
      );
      removed = t.agentIdentities.length !== before.length;
    });
    return removed;
  }

  /** Removes by name or id; false when there was none. */
  removeFederatedCredential(tenantId: string, appIdOrObjectId: string, nameOrId: string): boolean {
    let removed = false;
    this.#mutate(tenantId, (t) => {
      const app = findApp(t, appIdOrObjectId);
      const before = app.federatedIdentityCredentials ?? [];
      app.federatedIdentityCredentials = before.filter((f) => f.name !== nameOrId && f.id !== nameOrId);
      removed = app.federatedIdentityCredentials.length !== before.length;
    });
    return removed;
  }

  /** Registers a certificate on an app; answers it as stored (keyId, thumbprint and dates filled in). */
  addKeyCredential(tenantId: string, appIdOrObjectId: string, credential: unknown): KeyCredentialSpec {
    const problem = keyCredentialProblem(credential);
    if (problem) throw new DirectoryError(`key credential: ${problem}`);
    let appId = "";
    this.#mutate(tenantId, (t) => {
      const app = findApp(t, appIdOrObjectId);
      appId = app.appId;
      app.keyCredentials ??= [];
      app.keyCredentials.push({ ...(credential as KeyCredentialSpec) });
    });
    const t = this.tenant(tenantId);
    const stored = t ? findApp(t, appId).keyCredentials?.at(-1) : undefined;
    if (!stored) throw new DirectoryError(`application '${appIdOrObjectId}' lost its key credential`);
    return stored;
  }

  /** Removes by keyId or SHA-1 thumbprint (any case); false when there was none. */
  removeKeyCredential(tenantId: string, appIdOrObjectId: string, keyIdOrThumbprint: string): boolean {
    const key = keyIdOrThumbprint.toLowerCase();
    let removed = false;
    this.#mutate(tenantId, (t) => {
      const app = findApp(t, appIdOrObjectId);
      const before = app.keyCredentials ?? [];
      app.keyCredentials = before.filter(
        (k) => k.keyId?.toLowerCase() !== key && k.customKeyIdentifier?.toLowerCase() !== key,
      );
      removed = app.keyCredentials.length !== before.length;
    });
    return removed;
  }

  #mutate(tenantId: string, change: (t: TenantSpec) => void): void {
    const copy = structuredClone(this.#spec);
    const t = copy.tenants.find((x) => x.id.toLowerCase() === tenantId.toLowerCase());
    if (!t) throw new DirectoryError(`tenant '${tenantId}' does not exist`);
    change(t);
    this.#spec = normalizeDirectory(copy);
  }
}

export function findApp(t: TenantSpec, appIdOrObjectId: string): ApplicationSpec {
  const key = appIdOrObjectId.toLowerCase();
  const app = t.applications?.find((a) => a.appId.toLowerCase() === key || a.objectId?.toLowerCase() === key);
  if (!app) throw new DirectoryError(`application '${appIdOrObjectId}' does not exist in tenant ${t.id}`);
  return app;
}

function sameId(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
