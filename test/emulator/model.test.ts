import { describe, expect, it } from "vitest";
import {
  appTokenClaims,
  FACET_AGENT_IDENTITY,
  FACET_AGENT_USER,
  facetSet,
  fmiSubject,
  guidBase64Url,
  pairwiseSubject,
  userTokenClaims,
} from "../../src/emulator/claims.ts";
import { loadDirectoryFile } from "../../src/emulator/directory-file.ts";
import { normalizeDirectory } from "../../src/emulator/directory-validate.ts";
import { EntraError } from "../../src/emulator/errors.ts";
import { parseScope } from "../../src/emulator/scopes.ts";
import { directoryErrorOf } from "../support/emulator/test-harness.ts";
import { IDS, testDirectory } from "../support/emulator/testing.ts";

describe("directory validation", () => {
  it("accepts the sample directory and fills in derived ids", async () => {
    const dir = await loadDirectoryFile("examples/directory.yaml");
    const app = dir.tenants[0]?.applications?.[0];
    expect(app?.objectId).toMatch(/^[0-9a-f-]{36}$/);
    expect(app?.servicePrincipalId).toMatch(/^[0-9a-f-]{36}$/);
    // Derived ids are stable across loads (restarts).
    expect((await loadDirectoryFile("examples/directory.yaml")).tenants[0]?.applications?.[0]?.objectId).toBe(
      app?.objectId,
    );
  });

  it("lists every problem with its path", () => {
    const dir = testDirectory();
    const t = dir.tenants[0];
    if (!t) throw new Error("fixture");
    t.agentIdentities?.push({ appId: IDS.app, blueprintAppId: IDS.app });
    t.grants?.push({ type: "application", clientAppId: IDS.agent, resource: IDS.graph, roles: ["Nope.All"] });
    t.users?.push({ objectId: "x", userPrincipalName: "nobody" });
    const message = directoryErrorOf(dir);
    expect(message).toContain(`tenants[0].agentIdentities[2].appId: ${IDS.app} is used twice`);
    expect(message).toContain("tenants[0].agentIdentities[2].blueprintAppId");
    expect(message).toContain("'Nope.All' is not an app role");
    expect(message).toContain("tenants[0].users[1].objectId: must be a GUID");
    expect(message).toContain("tenants[0].users[1].userPrincipalName");
  });

  it("refuses more than 20 federated credentials and bad ones", () => {
    const dir = testDirectory();
    const app = dir.tenants[0]?.applications?.[0];
    if (!app) throw new Error("fixture");
    app.federatedIdentityCredentials = Array.from({ length: 21 }, (_, i) => ({
      name: `fic-${i}`,
      issuer: "https://issuer.example",
      subject: `s${i}`,
      audiences: ["api://AzureADTokenExchange"],
    }));
    expect(() => normalizeDirectory(dir)).toThrow(/at most 20/);
    app.federatedIdentityCredentials = [{ name: "x1y", issuer: "https://i", subject: "s", audiences: [] }];
    expect(() => normalizeDirectory(dir)).toThrow(/exactly one value/);
  });

  it("writes GUIDs in lower case, as Entra does", () => {
    const dir = testDirectory();
    const t = dir.tenants[0];
    if (!t?.agentIdentities?.[0]) throw new Error("fixture");
    t.id = t.id.toUpperCase();
    t.agentIdentities[0].appId = t.agentIdentities[0].appId.toUpperCase();
    const normalized = normalizeDirectory(dir);
    expect(normalized.tenants[0]?.id).toBe(IDS.tenant);
    expect(normalized.tenants[0]?.agentIdentities?.[0]?.appId).toBe(IDS.agent);
  });

  it("refuses what is not a directory", () => {
    expect(() => normalizeDirectory([])).toThrow(/tenants/);
    expect(() => normalizeDirectory({ tenants: [{ id: "abc" }] })).toThrow(
      /tenants\[0\]\.id: must be a GUID/,
    );
  });
});

describe("claims", () => {
  it("encodes GUIDs in .NET byte order, as in Entra's FMI subjects", () => {
    // Microsoft's tenant id and the tenant segment Entra printed for it in an AADSTS7002137 message.
    expect(guidBase64Url("72f988bf-86f1-41af-91ab-2d7cd011db47")).toBe("v4j5cvGGr0GRqy180BHbRw");
    expect(fmiSubject("72f988bf-86f1-41af-91ab-2d7cd011db47", IDS.agent, "x")).toMatch(
      /^\/eid1\/c\/pub\/t\/v4j5cvGGr0GRqy180BHbRw\/a\/.+\/x$/,
    );
  });

  const v2Graph = {
    version: 2 as const,
    audience: IDS.graph,
    idtypOnUserTokens: false,
    facetClaims: false,
    isExchange: false,
  };
  const common = {
    issuer: "https://e/t/v2.0",
    tenantId: IDS.tenant,
    resource: v2Graph,
    now: 1000,
    lifetimeSeconds: 60,
    azpacr: "2" as const,
    uti: "u",
    variation: 0,
  };

  it("marks agent identities and agent users with their facets, in any order", () => {
    const agent = { appId: IDS.agent, oid: IDS.agent, parentAppId: IDS.blueprint };
    const app = appTokenClaims({ ...common, client: agent, roles: ["b", "a"] });
    expect(app).toMatchObject({ roles: ["a", "b"], xms_par_app_azp: IDS.blueprint, exp: 1060, idtyp: "app" });
    expect(facetSet(app.xms_act_fct).has(FACET_AGENT_IDENTITY)).toBe(true);
    expect(facetSet(app.xms_sub_fct).has(FACET_AGENT_IDENTITY)).toBe(true);
    expect(facetSet(app.xms_idrel).has(7)).toBe(true);
    // Learn's own sample: several values, not one.
    expect(facetSet(app.xms_act_fct).size).toBeGreaterThan(1);
    const orders = new Set(
      [0, 1, 2, 3, 4, 5].map((variation) =>
        String(appTokenClaims({ ...common, variation, client: agent, roles: [] }).xms_act_fct),
      ),
    );
    expect(orders.size).toBeGreaterThan(1);
    const user = { oid: IDS.agentUser, upn: IDS.agentUserUpn, name: "n", isAgentUser: true };
    const delegated = userTokenClaims({ ...common, client: agent, user, scopes: ["User.Read"] });
    expect(facetSet(delegated.xms_sub_fct).has(FACET_AGENT_USER)).toBe(true);
    expect(facetSet(delegated.xms_act_fct).has(FACET_AGENT_IDENTITY)).toBe(true);
    expect(facetSet(delegated.xms_idrel).has(1)).toBe(true);
    // idtyp on user tokens only when the resource asked for it (include_user_token).
    expect(delegated.idtyp).toBeUndefined();
    const withIdtyp = userTokenClaims({
      ...common,
      resource: { ...v2Graph, idtypOnUserTokens: true },
      client: agent,
      user,
      scopes: ["User.Read"],
    });
    expect(withIdtyp.idtyp).toBe("user");
    const plain = appTokenClaims({ ...common, client: { appId: IDS.app, oid: "o" }, roles: [] });
    expect(plain.roles).toBeUndefined();
    expect(plain.xms_par_app_azp).toBeUndefined();
    expect(plain.xms_act_fct).toBeUndefined();
    const withFacets = appTokenClaims({
      ...common,
      resource: { ...v2Graph, facetClaims: true },
      client: { appId: IDS.app, oid: "o" },
      roles: [],
    });
    expect(facetSet(withFacets.xms_act_fct)).toEqual(new Set([3, 9]));
  });

  it("gives an agent's app-only token scp '/' on some tokens and none on others (both forms in Learn)", () => {
    const agent = { appId: IDS.agent, oid: IDS.agent, parentAppId: IDS.blueprint };
    const scps = [0, 1].map(
      (variation) => appTokenClaims({ ...common, variation, client: agent, roles: [] }).scp,
    );
    expect(scps).toEqual([undefined, "/"]);
  });

  it("writes v1 claims for a v1 resource: appid, appidacr, idp, ver 1.0, upn", () => {
    const v1 = { ...v2Graph, version: 1 as const, audience: "https://graph.microsoft.com" };
    const app = appTokenClaims({
      ...common,
      issuer: `https://sts.windows.net/${IDS.tenant}/`,
      resource: v1,
      client: { appId: IDS.app, oid: "o" },
      roles: [],
    });
    expect(app).toMatchObject({
      appid: IDS.app,
      appidacr: "2",
      ver: "1.0",
      idp: `https://sts.windows.net/${IDS.tenant}/`,
    });
    expect(app.azp).toBeUndefined();
    const user = { oid: IDS.user, upn: IDS.userUpn, name: "Alice", isAgentUser: false };
    const delegated = userTokenClaims({
      ...common,
      resource: v1,
      client: { appId: IDS.app, oid: "o" },
      user,
      scopes: [],
    });
    expect(delegated).toMatchObject({
      upn: IDS.userUpn,
      unique_name: IDS.userUpn,
      ver: "1.0",
      appid: IDS.app,
    });
    expect(delegated.preferred_username).toBeUndefined();
  });

  it("gives each app its own pairwise subject for a user", () => {
    expect(pairwiseSubject(IDS.user, IDS.agent)).not.toBe(pairwiseSubject(IDS.user, IDS.blueprint));
    expect(pairwiseSubject(IDS.user, IDS.agent)).toBe(pairwiseSubject(IDS.user.toUpperCase(), IDS.agent));
  });
});

describe("scope parsing", () => {
  it("splits the resource, its scopes and the OpenID scopes", () => {
    const r = parseScope(
      "https://graph.microsoft.com/User.Read  openid offline_access https://graph.microsoft.com/Mail.Read",
    );
    expect(r).toMatchObject({
      resource: "https://graph.microsoft.com",
      values: ["User.Read", "Mail.Read"],
      isDefault: false,
    });
    expect([...r.oidc]).toEqual(["openid", "offline_access"]);
    expect(parseScope("User.Read").resource).toBe("https://graph.microsoft.com");
    expect(parseScope("api://AzureADTokenExchange/.default")).toMatchObject({
      resource: "api://AzureADTokenExchange",
      isDefault: true,
    });
  });

  it.each([
    ["https://graph.microsoft.com/User.Read api://other/x", 28000],
    ["https://graph.microsoft.com/.default https://graph.microsoft.com/User.Read", 70011],
    ["openid", 70011],
    ["https://graph.microsoft.com/", 70011],
  ])("rejects '%s'", (scope, code) => {
    try {
      parseScope(scope);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(EntraError);
      expect((error as EntraError).code).toBe(code);
    }
  });
});
