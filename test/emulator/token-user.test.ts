import { describe, expect, it } from "vitest";
import { facetSet } from "../../src/emulator/claims.ts";
import {
  ASSERTION_TYPE,
  claimsOf,
  EXCHANGE_SCOPE,
  entraCode,
  useHarness,
} from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";

const h = useHarness();

const userToken = (claims?: Record<string, unknown>) => h.userToken(claims);

async function oboParams(scope: string, assertion?: string): Promise<Record<string, string>> {
  return {
    grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
    requested_token_use: "on_behalf_of",
    client_id: IDS.agent,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await h.t1(),
    assertion: assertion ?? (await userToken()),
    scope,
  };
}

async function userFicParams(scope: string, user: Record<string, string>): Promise<Record<string, string>> {
  const t1 = await h.t1();
  const t2 = await h.accessToken({ ...h.agentParams(t1), scope: EXCHANGE_SCOPE });
  return {
    grant_type: "user_fic",
    client_id: IDS.agent,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: t1,
    user_federated_identity_credential: t2,
    scope,
    ...user,
  };
}

describe("dev user tokens", () => {
  it("mints a user token whose audience is the blueprint", async () => {
    const c = claimsOf(await userToken());
    // A blueprint's tokens are v2 (capture); it asks for no idtyp on user tokens.
    expect(c).toMatchObject({ aud: IDS.blueprint, oid: IDS.user, scp: "access_as_user", ver: "2.0" });
    expect(c.idtyp).toBeUndefined();
  });
});

describe("on-behalf-of", () => {
  it("exchanges a user token for a delegated token of the agent identity", async () => {
    const r = await h.token(
      await oboParams("https://graph.microsoft.com/User.Read openid profile offline_access"),
    );
    expect(r.status).toBe(200);
    const c = claimsOf(r.json.access_token);
    // Graph's user tokens: v1, idtyp (Graph sets include_user_token), the facet claims (OBO capture).
    expect(c).toMatchObject({
      aud: "https://graph.microsoft.com",
      appid: IDS.agent,
      idtyp: "user",
      oid: IDS.user,
      scp: "User.Read",
      xms_par_app_azp: IDS.blueprint,
      upn: IDS.userUpn,
      ver: "1.0",
    });
    expect(facetSet(c.xms_act_fct).has(11)).toBe(true);
    expect(facetSet(c.xms_sub_fct).has(13)).toBe(false);
    expect(r.json.scope).toBe("https://graph.microsoft.com/User.Read openid profile offline_access");
    expect(String(r.json.refresh_token)).toMatch(/^1\.A/);
    expect(claimsOf(r.json.id_token)).toMatchObject({ aud: IDS.agent, oid: IDS.user });
  });

  it("issues no refresh token unless offline_access is asked for", async () => {
    const r = await h.token(await oboParams("https://graph.microsoft.com/.default"));
    expect(r.status).toBe(200);
    expect(r.json.refresh_token).toBeUndefined();
    expect(claimsOf(r.json.access_token).scp).toBe("Mail.Read User.Read");
  });

  it("lets the blueprint itself do OBO with its own credential", async () => {
    const r = await h.token({
      grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
      requested_token_use: "on_behalf_of",
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
      assertion: await userToken(),
      scope: "api://contoso-weather/Forecast.Read",
    });
    expect(r.status).toBe(200);
    expect(claimsOf(r.json.access_token)).toMatchObject({
      aud: IDS.weather,
      azp: IDS.blueprint,
      scp: "Forecast.Read",
    });
  });

  it("lets agent identities inherit what their blueprint lists as inheritable, per resource", async () => {
    const weather = "api://contoso-weather/Forecast.Read";
    // IDS.blueprint lists nothing as inheritable: its own grant on the weather API does not reach its agent.
    expect(entraCode(await h.token(await oboParams(weather)))).toBe(65001);
    const blueprint = "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f";
    const agent = "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    const secret = "inheriting-blueprint-secret";
    await h.addToTenant("applications", {
      appId: blueprint,
      kind: "agentIdentityBlueprint",
      identifierUris: [`api://${blueprint}`],
      scopes: ["access_as_user"],
      clientSecrets: [{ value: secret }],
      inheritablePermissions: [
        {
          resourceAppId: "api://contoso-weather",
          inheritableScopes: { kind: "enumerated", scopes: ["Forecast.Read"] },
          inheritableRoles: { kind: "allAllowed" },
        },
      ],
    });
    await h.addToTenant("agentIdentities", { appId: agent, blueprintAppId: blueprint });
    await h.addToTenant("grants", {
      type: "delegated",
      clientAppId: blueprint,
      resource: IDS.weather,
      scopes: ["Forecast.Read"],
    });
    await h.addToTenant("grants", {
      type: "application",
      clientAppId: blueprint,
      resource: IDS.weather,
      roles: ["Forecast.Read"],
    });
    await h.addToTenant("grants", {
      type: "delegated",
      clientAppId: blueprint,
      resource: IDS.graph,
      scopes: ["User.Read"],
    });
    const t1 = await h.t1(agent, blueprint, secret);
    const obo = async (scope: string) =>
      h.token({
        ...(await oboParams(scope, await userToken({ audience: blueprint }))),
        client_id: agent,
        client_assertion: t1,
      });
    const r = await obo(weather);
    expect(r.status).toBe(200);
    expect(claimsOf(r.json.access_token)).toMatchObject({
      azp: agent,
      scp: "Forecast.Read",
      xms_par_app_azp: blueprint,
    });
    // Graph is not listed as inheritable: the blueprint's Graph grant stays the blueprint's.
    expect(entraCode(await obo("https://graph.microsoft.com/User.Read"))).toBe(65001);
    // App roles are inherited too (inheritableRoles allAllowed).
    const app = claimsOf(
      await h.accessToken({ ...h.agentParams(t1, agent), scope: "api://contoso-weather/.default" }),
    );
    expect(app.roles).toEqual(["Forecast.Read"]);
  });

  it("refuses the old per-agent inheritance switch with a pointer to inheritablePermissions", async () => {
    const r = await callJson(
      h.dispatcher,
      "POST",
      `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/agentIdentities`,
      {
        appId: "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f",
        blueprintAppId: IDS.blueprint,
        inheritDelegatedPermissions: true,
      },
    );
    expect(r.status).toBe(400);
    expect(String(r.json.detail)).toContain("inheritablePermissions");
  });

  it("refuses a user token whose audience is not the blueprint", async () => {
    const r = await h.token(
      await oboParams("https://graph.microsoft.com/User.Read", await userToken({ audience: IDS.weather })),
    );
    expect(r.json.error).toBe("invalid_grant");
    expect(entraCode(r)).toBe(50013);
    expect(String(r.json.error_description)).toContain(`expected audience is '${IDS.blueprint}'`);
  });

  it("refuses an expired user token with AADSTS500133", async () => {
    const r = await h.token(
      await oboParams("https://graph.microsoft.com/User.Read", await userToken({ lifetimeSeconds: -60 })),
    );
    expect(entraCode(r)).toBe(500133);
  });

  it("refuses an app token as the assertion with AADSTS7000114, as Entra does", async () => {
    const appToken = await h.accessToken({ ...h.agentParams(await h.t1()), scope: EXCHANGE_SCOPE });
    const r = await h.token(await oboParams("https://graph.microsoft.com/User.Read", appToken));
    expect(r.json.error).toBe("unauthorized_client");
    expect(entraCode(r)).toBe(7000114);
    expect(String(r.json.error_description)).toContain(`Application '${IDS.agent}' is not allowed`);
  });

  it.each([
    ["a scope that is not granted for this user", "https://graph.microsoft.com/Mail.Send", 65001],
    ["a scope the resource does not define", "https://graph.microsoft.com/Files.Read", 70011],
    ["two resources", "https://graph.microsoft.com/User.Read api://contoso-weather/Forecast.Read", 28000],
    ["an unknown resource", "api://unknown/thing", 500011],
  ])("refuses %s", async (_name, scope, code) => {
    expect(entraCode(await h.token(await oboParams(scope)))).toBe(code);
  });

  it("requires requested_token_use and assertion", async () => {
    const params = await oboParams("https://graph.microsoft.com/User.Read");
    expect(entraCode(await h.token({ ...params, requested_token_use: undefined }))).toBe(900144);
    expect(entraCode(await h.token({ ...params, assertion: undefined }))).toBe(900144);
  });
});

describe("agent user (user_fic)", () => {
  it("gives the agent identity a token for its agent user by user_id", async () => {
    const r = await h.token(
      await userFicParams("https://graph.microsoft.com/.default offline_access", { user_id: IDS.agentUser }),
    );
    expect(r.status).toBe(200);
    const c = claimsOf(r.json.access_token);
    expect(c).toMatchObject({
      idtyp: "user",
      oid: IDS.agentUser,
      appid: IDS.agent,
      xms_par_app_azp: IDS.blueprint,
      scp: "Mail.Read Mail.Send User.Read",
    });
    expect(facetSet(c.xms_sub_fct).has(13)).toBe(true);
    expect(facetSet(c.xms_act_fct).has(11)).toBe(true);
    expect(r.json.refresh_token).toBeDefined();
  });

  it("accepts username in place of user_id", async () => {
    const r = await h.token(
      await userFicParams("https://graph.microsoft.com/User.Read", { username: IDS.agentUserUpn }),
    );
    expect(r.status).toBe(200);
    expect(claimsOf(r.json.access_token).oid).toBe(IDS.agentUser);
  });

  it("refuses a user that is not this agent's agent user", async () => {
    expect(
      entraCode(
        await h.token(await userFicParams("https://graph.microsoft.com/User.Read", { user_id: IDS.user })),
      ),
    ).toBe(50034);
    const unknown = { username: "nobody@contoso.onmicrosoft.com" };
    expect(
      entraCode(await h.token(await userFicParams("https://graph.microsoft.com/User.Read", unknown))),
    ).toBe(50034);
  });

  it("refuses T1 in place of T2", async () => {
    const params = await userFicParams("https://graph.microsoft.com/User.Read", { user_id: IDS.agentUser });
    const r = await h.token({ ...params, user_federated_identity_credential: params.client_assertion });
    expect(entraCode(r)).toBe(50013);
  });

  it("requires the credential and the user", async () => {
    const params = await userFicParams("https://graph.microsoft.com/User.Read", { user_id: IDS.agentUser });
    expect(entraCode(await h.token({ ...params, user_federated_identity_credential: undefined }))).toBe(
      900144,
    );
    expect(entraCode(await h.token({ ...params, user_id: undefined }))).toBe(900144);
  });

  it("refuses user_fic from an ordinary app", async () => {
    const r = await h.token({
      grant_type: "user_fic",
      client_id: IDS.app,
      client_secret: IDS.appSecret,
      user_id: IDS.agentUser,
      user_federated_identity_credential: "x",
      scope: "https://graph.microsoft.com/User.Read",
    });
    expect(entraCode(r)).toBe(700016);
  });
});

describe("refresh_token", () => {
  it("redeems a refresh token from OBO, and rejects misuse", async () => {
    const first = await h.token(await oboParams("https://graph.microsoft.com/User.Read offline_access"));
    const rt = String(first.json.refresh_token);
    const refreshParams = {
      grant_type: "refresh_token",
      client_id: IDS.agent,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await h.t1(),
      refresh_token: rt,
    };
    const again = await h.token(refreshParams);
    expect(again.status).toBe(200);
    expect(claimsOf(again.json.access_token)).toMatchObject({
      oid: IDS.user,
      scp: "User.Read",
      appid: IDS.agent,
    });
    expect(again.json.refresh_token).toBeDefined();

    const otherResource = await h.token({ ...refreshParams, scope: "https://graph.microsoft.com/Mail.Read" });
    expect(claimsOf(otherResource.json.access_token).scp).toBe("Mail.Read");

    const wrongClient = {
      grant_type: "refresh_token",
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
      refresh_token: rt,
    };
    expect(entraCode(await h.token(wrongClient))).toBe(70000);
    expect(entraCode(await h.token({ ...refreshParams, refresh_token: "1.Agarbage" }))).toBe(9002313);
    const logs = h.logLines.join("");
    expect(logs).not.toContain(rt);
    expect(logs).not.toContain(String(again.json.refresh_token));
    expect(logs).not.toContain(String(again.json.access_token).split(".")[2]);

    expect(
      (await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/refresh-tokens/expire`)).status,
    ).toBe(204);
    expect(entraCode(await h.token(refreshParams))).toBe(700082);
  });
});
