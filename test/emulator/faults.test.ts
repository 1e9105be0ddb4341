import { describe, expect, it } from "vitest";
import { normalizeDirectory } from "../../src/emulator/directory-validate.ts";
import {
  claimsOf,
  directoryErrorOf,
  EXCHANGE_SCOPE,
  entraCode,
  useHarness,
} from "../support/emulator/test-harness.ts";
import { callJson, IDS, testDirectory } from "../support/emulator/testing.ts";

/** Conditional Access faults, the federated-credential propagation delay, and directory rules of Entra. */
const h = useHarness({ now: () => clock, settings: { federatedCredentialPropagationSeconds: 60 } });
let clock = Math.floor(Date.now() / 1000);

const admin = (method: string, path: string, body?: unknown) =>
  callJson(h.dispatcher, method, `${h.emulator.url}/_emulator${path}`, body);

const appParams = {
  grant_type: "client_credentials",
  client_id: IDS.app,
  client_secret: IDS.appSecret,
  scope: "https://graph.microsoft.com/.default",
};

describe("claims challenges (Conditional Access) as an injected fault", () => {
  it("answers with Learn's body: interaction_required, the AADSTS code, a claims JSON string", async () => {
    const queued = await admin("POST", "/faults", { count: 1, kind: "claimsChallenge", code: 50079 });
    expect(queued.status).toBe(201);
    const r = await h.token(appParams);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: "interaction_required", error_codes: [50079] });
    expect(String(r.json.error_description)).toMatch(/^AADSTS50079: .*'https:\/\/graph\.microsoft\.com'/);
    const claims = JSON.parse(String(r.json.claims)) as { access_token: { polids: { values: string[] } } };
    expect(claims.access_token.polids.values[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect((await h.token(appParams)).status).toBe(200);
  });

  it("passes a given claims value through, and only to the grant and client it names", async () => {
    const challenge = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
    await admin("POST", "/faults", {
      count: 1,
      kind: "claimsChallenge",
      claims: challenge,
      grant: "client_credentials+fmi_path",
      clientId: IDS.blueprint,
    });
    // Another grant of the same client, and the same grant of another client, pass.
    expect(
      (await h.token({ ...appParams, client_id: IDS.blueprint, client_secret: IDS.blueprintSecret })).status,
    ).toBe(200);
    const t1 = {
      grant_type: "client_credentials",
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
      scope: EXCHANGE_SCOPE,
      fmi_path: IDS.agent,
    };
    const refused = await h.token(t1);
    expect(entraCode(refused)).toBe(50076);
    expect(refused.json.claims).toBe(challenge);
    expect((await h.token(t1)).status).toBe(200);
  });

  it("refuses a claims value that is not JSON", async () => {
    const r = await admin("POST", "/faults", { count: 1, kind: "claimsChallenge", claims: "not json" });
    expect(r.status).toBe(400);
    expect((await admin("GET", "/faults")).json.pending).toEqual([]);
  });
});

describe("federated credential propagation (Learn: AADSTS70021 for minutes after a change)", () => {
  it("refuses a new credential's assertions until the delay has passed, then accepts them", async () => {
    const mi = "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a";
    expect(
      (
        await admin("POST", `/tenants/${IDS.tenant}/applications`, {
          appId: mi,
          kind: "managedIdentity",
          clientSecrets: [{ value: "imds-stand-in-secret" }],
        })
      ).status,
    ).toBe(201);
    const miToken = await h.accessToken({
      grant_type: "client_credentials",
      client_id: mi,
      client_secret: "imds-stand-in-secret",
      scope: EXCHANGE_SCOPE,
    });
    const c = claimsOf(miToken);
    const added = await admin(
      "POST",
      `/tenants/${IDS.tenant}/applications/${IDS.blueprint}/federatedIdentityCredentials`,
      {
        name: "fresh-mi",
        issuer: c.iss,
        subject: c.sub,
        audiences: ["api://AzureADTokenExchange"],
      },
    );
    expect(added.status).toBe(201);
    const t1 = () =>
      h.token({
        grant_type: "client_credentials",
        client_id: IDS.blueprint,
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: miToken,
        scope: EXCHANGE_SCOPE,
        fmi_path: IDS.agent,
      });
    const early = await t1();
    expect(early.status).toBe(400);
    expect(early.json.error).toBe("invalid_request");
    expect(entraCode(early)).toBe(70021);
    clock += 59;
    expect(entraCode(await t1())).toBe(70021);
    clock += 1;
    expect((await t1()).status).toBe(200);
  });

  it("is a setting (0 = off) the admin API changes", async () => {
    const r = await admin("POST", "/settings", { federatedCredentialPropagationSeconds: 5 });
    expect(r.json.federatedCredentialPropagationSeconds).toBe(5);
    expect((await admin("POST", "/settings", { federatedCredentialPropagationSeconds: -1 })).status).toBe(
      400,
    );
    await admin("POST", "/settings", { federatedCredentialPropagationSeconds: 60 });
  });
});

describe("directory rules from Learn", () => {
  it("makes an agent identity's object id its app id, and refuses another", () => {
    const dir = testDirectory();
    expect(normalizeDirectory(dir).tenants[0]?.agentIdentities?.[0]?.servicePrincipalId).toBe(IDS.agent);
    const agent = dir.tenants[0]?.agentIdentities?.[0];
    if (agent) agent.servicePrincipalId = "11111111-2222-4333-8444-555555555555";
    expect(() => normalizeDirectory(dir)).toThrow(
      /servicePrincipalId: an agent identity's object id is its app id/,
    );
  });

  it("checks inheritable permissions: blueprints only, known resources and scopes, Graph's kinds", () => {
    const dir = testDirectory();
    const apps = dir.tenants[0]?.applications ?? [];
    const blueprint = apps.find((a) => a.appId === IDS.blueprint);
    const app = apps.find((a) => a.appId === IDS.app);
    if (!blueprint || !app) throw new Error("test directory changed");
    blueprint.inheritablePermissions = [
      { resourceAppId: "api://nowhere" },
      { resourceAppId: IDS.graph, inheritableScopes: { kind: "enumerated", scopes: ["Nope.Read"] } },
      { resourceAppId: IDS.weather, inheritableRoles: { kind: "enumerated" as "none" } },
    ];
    app.inheritablePermissions = [{ resourceAppId: IDS.graph }];
    const message = directoryErrorOf(dir);
    expect(message).toContain("inheritablePermissions[0].resourceAppId: 'api://nowhere' is not a resource");
    expect(message).toContain("'Nope.Read' is not a delegated scope");
    expect(message).toContain("inheritablePermissions[2].inheritableRoles.kind");
    expect(message).toContain("applications[2].inheritablePermissions: only an agentIdentityBlueprint");
  });

  it("checks requestedAccessTokenVersion and optionalClaims", () => {
    const dir = testDirectory();
    const weather = dir.tenants[0]?.resources?.find((r) => r.appId === IDS.weather);
    if (!weather) throw new Error("test directory changed");
    weather.requestedAccessTokenVersion = 3 as 2;
    weather.optionalClaims = { accessToken: [{ name: 7 as unknown as string }] };
    expect(() => normalizeDirectory(dir)).toThrow(
      /requestedAccessTokenVersion: must be 1, 2 or null[\s\S]*optionalClaims/,
    );
  });
});
