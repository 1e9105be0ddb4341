import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { fmiSubject } from "../../src/emulator/claims.ts";
import { ASSERTION_TYPE, claimsOf, EXCHANGE_SCOPE, useHarness } from "../support/emulator/test-harness.ts";
import { callJson, type HttpResult, IDS } from "../support/emulator/testing.ts";

/**
 * Golden evidence: Entra's own tokens and error bodies (Learn samples and published captures, sanitised,
 * each with its source, in test/fixtures/entra/) against what the emulator issues for the same case. The
 * claim sets must be the same (apart from the claims listed as not emulated, documented in
 * docs/emulator.md), and every common claim must have the same shape.
 */

interface Fixture {
  source: string;
  sanitised: string;
  kind: "token" | "error";
  value: Record<string, unknown>;
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(new URL(`../fixtures/entra/${name}`, import.meta.url), "utf8")) as Fixture;
}

/** Claims Entra's tokens carry that the emulator leaves out (tenant, device and session details). */
const NOT_EMULATED = new Set([
  "acct",
  "acrs",
  "app_displayname",
  "family_name",
  "given_name",
  "ipaddr",
  "platf",
  "puid",
  "sid",
  "tenant_region_scope",
  "wids",
  "xms_acd",
  "xms_ficinfo",
  "xms_pftexp",
  "xms_rd",
  "xms_st",
  "xms_tcdt",
]);

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The shape of a claim value: what code reading it depends on. */
function shape(value: unknown): string {
  if (Array.isArray(value)) return `array of ${[...new Set(value.map(shape))].join("|")}`;
  if (typeof value === "string") {
    if (GUID.test(value)) return "guid";
    if (/^\d+( \d+)*$/.test(value)) return "space-separated numbers";
    if (/^https:\/\//.test(value)) return "url";
    return "string";
  }
  return typeof value;
}

/** Claims whose value form Entra itself varies (Learn: a v1 aud is any app ID URI or the app id). */
const SHAPE_VARIES = new Set(["aud", "scp", "name", "sub"]);

function compareTokens(name: string, emulated: Record<string, unknown>, allowedExtra: string[] = []): void {
  const golden = fixture(name).value;
  const missing = Object.keys(golden).filter((k) => !(k in emulated) && !NOT_EMULATED.has(k));
  const extra = Object.keys(emulated).filter((k) => !(k in golden) && !allowedExtra.includes(k));
  expect({ missing, extra }, name).toEqual({ missing: [], extra: [] });
  for (const [claim, value] of Object.entries(golden)) {
    if (!(claim in emulated) || SHAPE_VARIES.has(claim)) continue;
    expect(shape(emulated[claim]), `${name}: ${claim}`).toBe(shape(value));
  }
}

const TRAILER =
  /^AADSTS(\d+): .+?(\r\n| ?)Trace ID: ?[0-9a-f-]{36}(\r\n| )Correlation ID: [0-9a-f-]{36}(\r\n| )Timestamp: \d{4}-\d\d-\d\d ?\d\d:\d\d:\d\dZ$/s;

function compareErrors(name: string, emulated: HttpResult, allowedExtra: string[] = []): void {
  const golden = fixture(name).value;
  const body = emulated.json;
  const missing = Object.keys(golden).filter((k) => !(k in body) && !allowedExtra.includes(k));
  const extra = Object.keys(body).filter((k) => !(k in golden) && !allowedExtra.includes(k));
  expect({ missing, extra }, name).toEqual({ missing: [], extra: [] });
  expect(body.error, name).toBe(golden.error);
  expect(body.error_codes, name).toEqual(golden.error_codes);
  for (const key of Object.keys(golden))
    if (key in body) expect(typeof body[key], `${name}: ${key}`).toBe(typeof golden[key]);
  expect(String(golden.error_description)).toMatch(TRAILER);
  // The emulator writes Learn's CRLF trailer.
  expect(String(body.error_description)).toMatch(TRAILER);
  expect(String(body.error_description)).toContain("\r\nTrace ID: ");
}

let clock = Math.floor(Date.now() / 1000);
const h = useHarness({ now: () => clock });
const API = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a";
const API_SECRET = "ordinary-middle-tier-secret";

beforeAll(async () => {
  // An ordinary (non-agent) web API that signs users in and calls Graph on their behalf.
  await h.addToTenant("applications", {
    appId: API,
    identifierUris: [`api://${API}`],
    scopes: ["access"],
    clientSecrets: [{ value: API_SECRET }],
  });
  await h.addToTenant("grants", {
    type: "delegated",
    clientAppId: API,
    resource: IDS.graph,
    scopes: ["User.Read"],
  });
});

const devUserToken = (audience: string, userId: string = IDS.user) => h.userToken({ userId, audience });

function oboParams(clientParams: Record<string, string>, assertion: string, scope: string) {
  return {
    ...clientParams,
    grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
    requested_token_use: "on_behalf_of",
    assertion,
    scope,
  };
}

describe("tokens against Entra's", () => {
  it("reproduces the FMI subject of a published T1 (GUIDs in .NET byte order, base64url)", () => {
    // agnte/Rido.BFLite AgenticTokens2.md (Token1): tenant, blueprint and agent ids as published there.
    expect(
      fmiSubject(
        "5369a35c-46a5-4677-8ff9-2e65587654e7",
        "9d17cc32-c91b-4368-8494-1b29ccb0dbcf",
        "5081ddac-3d33-4766-98fe-80c38c5ce554",
      ),
    ).toBe(
      "/eid1/c/pub/t/XKNpU6VGd0aP-S5lWHZU5w/a/MswXnRvJaEOElBspzLDbzw/5081ddac-3d33-4766-98fe-80c38c5ce554",
    );
    const t1 = fixture("capture-blueprint-t1.json").value;
    expect(t1.sub).toBe(fmiSubject(String(t1.tid), String(t1.azp), String(t1.sub).split("/").at(-1) ?? ""));
  });

  it("T1: the blueprint's exchange token", async () => {
    compareTokens("capture-blueprint-t1.json", claimsOf(await h.t1()));
  });

  it("T2: the agent identity's exchange token", async () => {
    const t2 = await h.accessToken({ ...h.agentParams(await h.t1()), scope: EXCHANGE_SCOPE });
    compareTokens("capture-agent-t2.json", claimsOf(t2));
  });

  it("an agent identity's app token for Graph (Learn's sample and a capture)", async () => {
    for (const _ of [1, 2]) {
      // Two tokens: the emulator alternates scp "/" (Learn: "empty or /" on app-only agent tokens).
      const c = claimsOf(await h.accessToken(h.agentParams(await h.t1())));
      compareTokens("learn-agent-app-token-v1.json", c, ["roles", "scp"]);
      compareTokens("capture-agent-graph-app-token-v1.json", c, ["scp"]);
    }
  });

  it("an agent user's Graph token (user_fic)", async () => {
    const t1 = await h.t1();
    const t2 = await h.accessToken({ ...h.agentParams(t1), scope: EXCHANGE_SCOPE });
    const token = await h.accessToken({
      grant_type: "user_fic",
      client_id: IDS.agent,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: t1,
      user_federated_identity_credential: t2,
      user_id: IDS.agentUser,
      scope: "https://graph.microsoft.com/.default",
    });
    compareTokens("capture-agent-user-graph-token-v1.json", claimsOf(token));
  });

  it("an agent identity's OBO Graph token for a human user", async () => {
    const params = oboParams(
      h.agentParams(await h.t1()),
      await devUserToken(IDS.blueprint),
      "https://graph.microsoft.com/User.Read",
    );
    compareTokens("capture-agent-obo-graph-token-v1.json", claimsOf(await h.accessToken(params)));
  });

  it("a user's token for a blueprint's scope (v2)", async () => {
    compareTokens("capture-user-token-for-blueprint-v2.json", claimsOf(await devUserToken(IDS.blueprint)));
  });

  it("a user's token for an ordinary API (v1, no idtyp, no facets)", async () => {
    compareTokens("capture-user-token-for-api-v1.json", claimsOf(await devUserToken(`api://${API}`)));
  });

  it("an ordinary middle tier's OBO Graph token (idtyp and facets: Graph asks for them)", async () => {
    const params = oboParams(
      { client_id: API, client_secret: API_SECRET },
      await devUserToken(`api://${API}`),
      "https://graph.microsoft.com/User.Read",
    );
    compareTokens("capture-obo-graph-user-token-v1.json", claimsOf(await h.accessToken(params)));
  });
});

describe("discovery against Entra's", () => {
  it("has the members of Learn's sample, with the same types and URL paths", async () => {
    const golden = fixture("learn-openid-configuration-v2.json").value;
    const r = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/common/v2.0/.well-known/openid-configuration`,
    );
    // userinfo is Graph's endpoint, which the emulator does not serve.
    for (const [key, value] of Object.entries(golden)) {
      if (key === "userinfo_endpoint") continue;
      expect(typeof r.json[key], key).toBe(typeof value);
      if (typeof value === "string")
        expect(new URL(String(r.json[key])).pathname, key).toBe(
          new URL(value.replace("{tenant}", "common")).pathname,
        );
      else expect(r.json[key], key).toEqual(expect.arrayContaining(value as unknown[]));
    }
  });
});

describe("errors against Entra's", () => {
  it("a Conditional Access refusal with a claims challenge (Learn's OBO example)", async () => {
    const params = h.agentParams(await h.t1());
    await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/faults`, {
      count: 1,
      kind: "claimsChallenge",
      code: 50079,
    });
    const r = await h.token(params);
    // Learn's sample has no error_uri; Entra's other bodies do.
    compareErrors("learn-error-obo-claims-challenge-50079.json", r, ["error_uri"]);
    const golden = JSON.parse(String(fixture("learn-error-obo-claims-challenge-50079.json").value.claims));
    expect(Object.keys(JSON.parse(String(r.json.claims)).access_token)).toEqual(
      Object.keys(golden.access_token),
    );
  });

  it("discovery of an unknown tenant", async () => {
    const r = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration`,
    );
    expect(r.status).toBe(400);
    compareErrors("capture-error-invalid-tenant.json", r);
  });

  it("an app-only token as an OBO assertion", async () => {
    const appToken = await h.accessToken({
      grant_type: "client_credentials",
      client_id: IDS.app,
      client_secret: IDS.appSecret,
      scope: `api://${API}/.default`,
    });
    const r = await h.token(
      oboParams(
        { client_id: API, client_secret: API_SECRET },
        appToken,
        "https://graph.microsoft.com/User.Read",
      ),
    );
    compareErrors("capture-error-7000114.json", r);
  });

  it("a delegated permission nobody granted (suberror consent_required)", async () => {
    const r = await h.token(
      oboParams(
        h.agentParams(await h.t1()),
        await devUserToken(IDS.blueprint),
        "https://graph.microsoft.com/Mail.Send",
      ),
    );
    // The capture's claims value is a Conditional Access policy list the emulator has no source for.
    compareErrors("capture-error-65001-consent.json", r, ["claims", "error_uri"]);
    expect(r.json.suberror).toBe("consent_required");
  });

  it("a federated credential that has not propagated yet", async () => {
    await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/settings`, {
      federatedCredentialPropagationSeconds: 30,
    });
    const mi = "4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b";
    await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications`, {
      appId: mi,
      kind: "managedIdentity",
      clientSecrets: [{ value: "imds-stand-in-secret" }],
    });
    const miToken = await h.accessToken({
      grant_type: "client_credentials",
      client_id: mi,
      client_secret: "imds-stand-in-secret",
      scope: EXCHANGE_SCOPE,
    });
    const c = claimsOf(miToken);
    const added = await callJson(
      h.dispatcher,
      "POST",
      `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications/${API}/federatedIdentityCredentials`,
      { name: "mi-credential", issuer: c.iss, subject: c.sub, audiences: ["api://AzureADTokenExchange"] },
    );
    expect(added.status, JSON.stringify(added.json)).toBe(201);
    const r = await h.token({
      grant_type: "client_credentials",
      client_id: API,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: miToken,
      scope: "https://graph.microsoft.com/.default",
    });
    compareErrors("capture-error-70021.json", r);
    clock += 30;
  });
});
