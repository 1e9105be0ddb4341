import { describe, expect, it } from "vitest";
import { facetSet, fmiSubject } from "../../src/emulator/claims.ts";
import { TOKEN_EXCHANGE_APP_ID } from "../../src/emulator/store.ts";
import {
  ASSERTION_TYPE,
  claimsOf,
  EXCHANGE_SCOPE,
  entraCode,
  useHarness,
} from "../support/emulator/test-harness.ts";
import { IDS } from "../support/emulator/testing.ts";

const h = useHarness();

const secretParams = {
  grant_type: "client_credentials",
  client_id: IDS.app,
  client_secret: IDS.appSecret,
  scope: "https://graph.microsoft.com/.default",
};

describe("client_credentials with a client secret", () => {
  it("issues Graph a v1 app token with the granted app roles, as Entra does", async () => {
    const r = await h.token(secretParams);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599 });
    expect(r.json.refresh_token).toBeUndefined();
    expect(r.headers.get("cache-control")).toContain("no-store");
    const c = claimsOf(r.json.access_token);
    expect(c).toMatchObject({
      iss: `https://sts.windows.net/${IDS.tenant}/`,
      idp: `https://sts.windows.net/${IDS.tenant}/`,
      aud: "https://graph.microsoft.com",
      tid: IDS.tenant,
      appid: IDS.app,
      appidacr: "1",
      idtyp: "app",
      ver: "1.0",
      roles: ["Application.ReadWrite.All"],
    });
    expect(c.azp).toBeUndefined();
    expect(c.sub).toBe(c.oid);
    expect(c.xms_par_app_azp).toBeUndefined();
    expect(Number(c.exp) - Number(c.iat)).toBe(3599);
  });

  it("issues a v2 token to a resource that asks for v2 (requestedAccessTokenVersion)", async () => {
    const c = claimsOf(await h.accessToken({ ...secretParams, scope: "api://contoso-weather/.default" }));
    expect(c).toMatchObject({
      iss: `${h.emulator.url}/${IDS.tenant}/v2.0`,
      aud: IDS.weather,
      azp: IDS.app,
      azpacr: "1",
      ver: "2.0",
    });
    expect(c.appid).toBeUndefined();
  });

  it("writes the identifier as asked in a v1 aud, and the app id with the aud use_guid optional claim", async () => {
    const { callJson } = await import("../support/emulator/testing.ts");
    const api = "2b7c1d0e-9f8a-4b6c-8d5e-3f2a1b0c9d8e";
    const add = (body: object) =>
      callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/resources`, body);
    expect((await add({ appId: api, identifierUris: ["api://v1-api"], appRoles: ["R"] })).status).toBe(201);
    expect(claimsOf(await h.accessToken({ ...secretParams, scope: "api://v1-api/.default" })).aud).toBe(
      "api://v1-api",
    );
    expect(claimsOf(await h.accessToken({ ...secretParams, scope: `${api}/.default` })).aud).toBe(api);
    const guid = "3c8d2e1f-0a9b-4c7d-9e6f-4a3b2c1d0e9f";
    expect(
      (
        await add({
          appId: guid,
          identifierUris: ["api://guid-api"],
          optionalClaims: { accessToken: [{ name: "aud", additionalProperties: ["use_guid"] }] },
        })
      ).status,
    ).toBe(201);
    expect(claimsOf(await h.accessToken({ ...secretParams, scope: "api://guid-api/.default" })).aud).toBe(
      guid,
    );
  });

  it("accepts the tenant's domain name in place of its id", async () => {
    const r = await h.token(secretParams, IDS.domain);
    expect(r.status).toBe(200);
    expect(claimsOf(r.json.access_token).tid).toBe(IDS.tenant);
  });

  it("issues a token without roles when nothing is granted, as Entra does", async () => {
    const c = claimsOf(await h.accessToken({ ...secretParams, scope: "api://contoso-weather/.default" }));
    expect(c.aud).toBe(IDS.weather);
    expect(c.roles).toBeUndefined();
  });

  it("answers errors in Entra's format", async () => {
    const r = await h.token({ ...secretParams, client_secret: "wrong-secret-value" });
    expect(r.status).toBe(401);
    expect(r.json.error).toBe("invalid_client");
    expect(r.json.error_codes).toEqual([7000215]);
    expect(String(r.json.error_description)).toMatch(
      /^AADSTS7000215: .*\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
    );
    expect(r.json.timestamp).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    expect(r.json.trace_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json.correlation_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it.each([
    [
      "unknown client",
      { client_id: "9b1c6f0e-2f43-4d4c-9d1e-8f0c2a6b7e11" },
      400,
      "unauthorized_client",
      700016,
    ],
    ["no credentials", { client_secret: undefined }, 401, "invalid_client", 7000218],
    ["no scope", { scope: undefined }, 400, "invalid_request", 900144],
    ["no client_id", { client_id: undefined }, 400, "invalid_request", 900144],
    ["no grant_type", { grant_type: undefined }, 400, "invalid_request", 900144],
    ["unsupported grant", { grant_type: "password" }, 400, "unsupported_grant_type", 70003],
    [
      "a scope without /.default",
      { scope: "https://graph.microsoft.com/User.Read" },
      400,
      "invalid_scope",
      1002012,
    ],
    ["an unknown resource", { scope: "api://nothing-here/.default" }, 400, "invalid_resource", 500011],
    [
      "a bad assertion type",
      { client_secret: undefined, client_assertion: "x.y.z", client_assertion_type: "saml" },
      400,
      "invalid_request",
      90011,
    ],
    [
      "a malformed assertion",
      { client_secret: undefined, client_assertion: "not-a-jwt", client_assertion_type: ASSERTION_TYPE },
      400,
      "invalid_request",
      50027,
    ],
  ])("rejects %s", async (_name, change, status, error, code) => {
    const r = await h.token({ ...secretParams, ...change });
    expect(r.status).toBe(status);
    expect(r.json.error).toBe(error);
    expect(entraCode(r)).toBe(code);
  });

  it("accepts client_secret_basic (HTTP Basic) client authentication", async () => {
    const { fetch } = await import("undici");
    const response = await fetch(h.tokenUrl, {
      method: "POST",
      dispatcher: h.dispatcher,
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${IDS.app}:${IDS.appSecret}`).toString("base64")}`,
      },
      body: "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
    });
    expect(response.status).toBe(200);
  });

  it("reads only form-encoded bodies, as Entra does", async () => {
    const { callJson } = await import("../support/emulator/testing.ts");
    const r = await callJson(h.dispatcher, "POST", h.tokenUrl, secretParams);
    expect(r.status).toBe(400);
    expect(entraCode(r)).toBe(900144);
  });

  it("rejects an unknown tenant with AADSTS90002", async () => {
    const r = await h.token(secretParams, "nosuchtenant.onmicrosoft.com");
    expect(entraCode(r)).toBe(90002);
  });
});

describe("the agent identity exchange", () => {
  it("gives the blueprint T1 for one of its agent identities (fmi_path)", async () => {
    const c = claimsOf(await h.t1());
    // The captures show the exchange app's GUID as T1's aud, not api://AzureADTokenExchange.
    expect(c).toMatchObject({
      aud: TOKEN_EXCHANGE_APP_ID,
      ver: "2.0",
      azp: IDS.blueprint,
      idtyp: "app",
      sub: fmiSubject(IDS.tenant, IDS.blueprint, IDS.agent),
    });
    expect(c.roles).toBeUndefined();
  });

  it.each([
    ["an agent of another blueprint", { fmi_path: IDS.otherAgent }, 700016],
    ["an unknown agent", { fmi_path: "5e0a4b3c-2d1e-4f00-8a9b-0c1d2e3f4a5b" }, 700016],
    [
      "a resource other than the exchange",
      { fmi_path: IDS.agent, scope: "https://graph.microsoft.com/.default" },
      70011,
    ],
    ["an ordinary app", { fmi_path: IDS.agent, client_id: IDS.app, client_secret: IDS.appSecret }, 700016],
  ])("refuses fmi_path naming %s", async (_name, change, code) => {
    const r = await h.token({
      grant_type: "client_credentials",
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
      scope: EXCHANGE_SCOPE,
      ...change,
    });
    // A refusal of the request (Entra answers 400 or 401 with an AADSTS code), never a server error.
    expect([400, 401]).toContain(r.status);
    expect(entraCode(r)).toBe(code);
  });

  it("gives the agent identity its app token for T1, with the agent claims", async () => {
    const r = await h.token(h.agentParams(await h.t1()));
    expect(r.status).toBe(200);
    const c = claimsOf(r.json.access_token);
    expect(c).toMatchObject({
      aud: "https://graph.microsoft.com",
      appid: IDS.agent,
      appidacr: "2",
      idtyp: "app",
      ver: "1.0",
      roles: ["User.Read.All"],
      xms_par_app_azp: IDS.blueprint,
    });
    expect(facetSet(c.xms_act_fct).has(11)).toBe(true);
    expect(facetSet(c.xms_sub_fct).has(11)).toBe(true);
    // Learn: an agent identity's object id and app id are the same value.
    expect(c.oid).toBe(IDS.agent);
    expect(c.sub).toBe(c.oid);
  });

  it("lets the agent identity get T2, its own exchange token", async () => {
    const c = claimsOf(await h.accessToken({ ...h.agentParams(await h.t1()), scope: EXCHANGE_SCOPE }));
    expect(c).toMatchObject({
      aud: TOKEN_EXCHANGE_APP_ID,
      azp: IDS.agent,
      oid: IDS.agent,
      sub: IDS.agent,
      xms_par_app_azp: IDS.blueprint,
    });
  });

  it("refuses T1 made for another agent identity", async () => {
    const r = await h.token(
      h.agentParams(await h.t1(IDS.otherAgent, IDS.otherBlueprint, "other-blueprint-secret")),
    );
    expect(r.status).toBe(401);
    expect(entraCode(r)).toBe(700213);
  });

  it("refuses T1 presented by a sibling agent identity", async () => {
    const r = await h.token(h.agentParams(await h.t1(), IDS.otherAgent));
    expect(entraCode(r)).toBe(700213);
  });

  it("refuses the blueprint's exchange token without fmi_path", async () => {
    const plain = await h.accessToken({
      grant_type: "client_credentials",
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
      scope: EXCHANGE_SCOPE,
    });
    expect(entraCode(await h.token(h.agentParams(plain)))).toBe(700213);
  });

  it("refuses a T1 whose signature was tampered with", async () => {
    const [head, body, sig] = (await h.t1()).split(".");
    const flipped = `${sig?.startsWith("A") ? "B" : "A"}${sig?.slice(1)}`;
    const r = await h.token(h.agentParams(`${head}.${body}.${flipped}`));
    expect(entraCode(r)).toBe(700027);
  });

  it("refuses a token of the wrong audience as the agent's credential", async () => {
    const v2Token = await h.accessToken({ ...secretParams, scope: "api://contoso-weather/.default" });
    expect(entraCode(await h.token(h.agentParams(v2Token)))).toBe(700212);
    // A v1 token's issuer (sts.windows.net) is no issuer a federated credential names.
    const v1Token = await h.accessToken(secretParams);
    expect(entraCode(await h.token(h.agentParams(v1Token)))).toBe(700211);
  });

  it("refuses an expired assertion with AADSTS700024", async () => {
    const minted = await h.userToken({ lifetimeSeconds: -3600 });
    const r = await h.token(h.agentParams(minted));
    expect(r.status).toBe(401);
    expect(entraCode(r)).toBe(700024);
  });

  it("refuses a client secret for an agent identity, which has no credentials", async () => {
    const r = await h.token({ ...secretParams, client_id: IDS.agent, client_secret: IDS.blueprintSecret });
    expect(entraCode(r)).toBe(7000215);
  });
});

describe("directory rules", () => {
  it("refuses an expired client secret", async () => {
    const { callJson } = await import("../support/emulator/testing.ts");
    const appId = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const add = await callJson(
      h.dispatcher,
      "POST",
      `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications`,
      {
        appId,
        clientSecrets: [{ value: "expired-secret-value", expiresAt: "2020-01-01T00:00:00Z" }],
      },
    );
    expect(add.status).toBe(201);
    const r = await h.token({ ...secretParams, client_id: appId, client_secret: "expired-secret-value" });
    expect(entraCode(r)).toBe(7000215);
  });

  it("refuses T1 issued in another tenant", async () => {
    const { callJson } = await import("../support/emulator/testing.ts");
    const tenant = "2b3c4d5e-6f70-4a81-9b2c-3d4e5f607182";
    const blueprint = "3c4d5e6f-7081-4a92-8c3d-4e5f60718293";
    const created = await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/tenants`, {
      id: tenant,
      applications: [
        { appId: blueprint, kind: "agentIdentityBlueprint", clientSecrets: [{ value: "tenant-two-secret" }] },
      ],
      agentIdentities: [{ appId: IDS.agent, blueprintAppId: blueprint }],
    });
    expect(created.status).toBe(201);
    const issued = await h.token(
      {
        grant_type: "client_credentials",
        client_id: blueprint,
        client_secret: "tenant-two-secret",
        scope: EXCHANGE_SCOPE,
        fmi_path: IDS.agent,
      },
      tenant,
    );
    expect(issued.status).toBe(200);
    const foreign = String(issued.json.access_token);
    expect(claimsOf(foreign).tid).toBe(tenant);
    expect(entraCode(await h.token(h.agentParams(foreign)))).toBe(700211);
  });
});
