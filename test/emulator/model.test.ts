import { describe, expect, it } from "vitest";
import {
  appTokenClaims,
  fmiSubject,
  guidBase64Url,
  pairwiseSubject,
  userTokenClaims,
} from "../../src/emulator/claims.ts";
import { DirectoryError } from "../../src/emulator/directory.ts";
import { loadDirectoryFile } from "../../src/emulator/directory-file.ts";
import { normalizeDirectory } from "../../src/emulator/directory-validate.ts";
import { EntraError } from "../../src/emulator/errors.ts";
import { parseScope } from "../../src/emulator/scopes.ts";
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
    let message = "";
    try {
      normalizeDirectory(dir);
    } catch (error) {
      expect(error).toBeInstanceOf(DirectoryError);
      message = (error as Error).message;
    }
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

  const common = {
    issuer: "https://e/t/v2.0",
    tenantId: IDS.tenant,
    audience: "https://graph.microsoft.com",
    now: 1000,
    lifetimeSeconds: 60,
    azpacr: "2" as const,
    uti: "u",
  };

  it("marks agent identities and agent users with their facets", () => {
    const agent = { appId: IDS.agent, oid: "o", parentAppId: IDS.blueprint };
    expect(appTokenClaims({ ...common, client: agent, roles: ["b", "a"] })).toMatchObject({
      roles: ["a", "b"],
      xms_act_fct: "11",
      xms_sub_fct: "11",
      xms_par_app_azp: IDS.blueprint,
      exp: 1060,
    });
    const user = { oid: IDS.agentUser, upn: IDS.agentUserUpn, name: "n", isAgentUser: true };
    expect(userTokenClaims({ ...common, client: agent, user, scopes: ["User.Read"] })).toMatchObject({
      idtyp: "user",
      xms_sub_fct: "13",
      xms_act_fct: "11",
    });
    const plain = appTokenClaims({ ...common, client: { appId: IDS.app, oid: "o" }, roles: [] });
    expect(plain.roles).toBeUndefined();
    expect(plain.xms_par_app_azp).toBeUndefined();
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
