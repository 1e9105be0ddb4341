import { createHash, X509Certificate } from "node:crypto";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { fetch } from "undici";
import { describe, expect, it } from "vitest";
import { claimsOf, entraCode, useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";

const h = useHarness();

const appParams = {
  grant_type: "client_credentials",
  client_id: IDS.app,
  client_secret: IDS.appSecret,
  scope: "https://graph.microsoft.com/.default",
};
const admin = (method: string, path: string, body?: unknown) =>
  callJson(h.dispatcher, method, `${h.emulator.url}/_emulator${path}`, body);

describe("discovery", () => {
  it("publishes Entra's OpenID configuration and the keys that sign its tokens", async () => {
    const config = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/${IDS.domain}/v2.0/.well-known/openid-configuration`,
    );
    expect(config.json).toMatchObject({
      issuer: `${h.emulator.url}/${IDS.tenant}/v2.0`,
      token_endpoint: `${h.emulator.url}/${IDS.tenant}/oauth2/v2.0/token`,
      jwks_uri: `${h.emulator.url}/${IDS.tenant}/discovery/v2.0/keys`,
    });
    const jwks = await callJson(h.dispatcher, "GET", String(config.json.jwks_uri));
    const key = (jwks.json.keys as Record<string, unknown>[])[0] ?? {};
    expect(key).toMatchObject({
      kty: "RSA",
      use: "sig",
      issuer: config.json.issuer,
      kid: expect.any(String),
    });
    // Entra's keys: kid = x5t = the base64url SHA-1 of the certificate in x5c, whose key is the key's.
    const der = Buffer.from(String((key.x5c as string[])[0]), "base64");
    expect(key.x5t).toBe(createHash("sha1").update(der).digest("base64url"));
    expect(key.kid).toBe(key.x5t);
    const cert = new X509Certificate(der);
    expect(cert.publicKey.export({ format: "jwk" })).toMatchObject({ n: key.n, e: key.e });
    // v2 token to a v2 resource: validated with the discovery issuer and these keys.
    const token = await h.accessToken({ ...appParams, scope: "api://contoso-weather/.default" });
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks.json as never), {
      issuer: String(config.json.issuer),
      audience: IDS.weather,
    });
    expect(payload.azp).toBe(IDS.app);
    expect(protectedHeader.x5t).toBe(protectedHeader.kid);
    // Graph's v1 token: the v1 issuer, the same keys.
    const graph = await h.accessToken(appParams);
    const v1 = await jwtVerify(graph, createLocalJWKSet(jwks.json as never), {
      issuer: `https://sts.windows.net/${IDS.tenant}/`,
      audience: "https://graph.microsoft.com",
    });
    expect(v1.payload.appid).toBe(IDS.app);
  });

  it("publishes the same keys for every tenant and at /common, as Entra's are shared", async () => {
    const kids = async (path: string) => {
      const r = await callJson(h.dispatcher, "GET", `${h.emulator.url}${path}`);
      expect(r.status).toBe(200);
      return (r.json.keys as { kid: string; issuer?: string }[]).map((k) => k.kid).sort();
    };
    const tenant = await kids(`/${IDS.tenant}/discovery/v2.0/keys`);
    expect(await kids("/common/discovery/v2.0/keys")).toEqual(tenant);
    expect(await kids("/organizations/discovery/v2.0/keys")).toEqual(tenant);
    expect(await kids(`/${IDS.tenant}/discovery/keys`)).toEqual(tenant);
    const common = await callJson(h.dispatcher, "GET", `${h.emulator.url}/common/discovery/v2.0/keys`);
    expect((common.json.keys as { issuer: string }[])[0]?.issuer).toBe(`${h.emulator.url}/{tenantid}/v2.0`);
  });

  it("answers MSAL's instance discovery for its own host", async () => {
    const host = new URL(h.emulator.url).host;
    const authorize = encodeURIComponent(`${h.emulator.url}/${IDS.tenant}/oauth2/v2.0/authorize`);
    const r = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/common/discovery/instance?api-version=1.1&authorization_endpoint=${authorize}`,
    );
    expect(r.json).toMatchObject({
      tenant_discovery_endpoint: `${h.emulator.url}/${IDS.tenant}/v2.0/.well-known/openid-configuration`,
      metadata: [{ preferred_network: host, aliases: [host] }],
    });
  });

  it("answers an unknown tenant's metadata with AADSTS90002", async () => {
    const r = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/nope.example/v2.0/.well-known/openid-configuration`,
    );
    expect(r.status).toBe(400);
    expect(entraCode(r)).toBe(90002);
    // Discovery answers invalid_tenant (captures), not the token endpoint's invalid_request.
    expect(r.json.error).toBe("invalid_tenant");
    const keys = await callJson(h.dispatcher, "GET", `${h.emulator.url}/nope.example/discovery/v2.0/keys`);
    expect(keys.json.error).toBe("invalid_tenant");
  });
});

describe("key rollover", () => {
  it("publishes the new key beside the old one and signs with the new one", async () => {
    const keysUrl = `${h.emulator.url}/${IDS.tenant}/discovery/v2.0/keys`;
    const before = await h.accessToken(appParams);
    const oldKid = decodeProtectedHeader(before).kid;
    const { json } = await admin("POST", "/keys/rotate");
    expect(json.kid).not.toBe(oldKid);
    const after = await h.accessToken(appParams);
    expect(decodeProtectedHeader(after).kid).toBe(json.kid);
    const published = (await callJson(h.dispatcher, "GET", keysUrl)).json as { keys: { kid: string }[] };
    expect(published.keys.map((k) => k.kid).sort()).toEqual([oldKid, json.kid].sort());
    const set = createLocalJWKSet(published as never);
    await expect(jwtVerify(before, set)).resolves.toBeDefined();
    await expect(jwtVerify(after, set)).resolves.toBeDefined();
    // A second rotation withdraws the oldest key: its tokens stop validating.
    await admin("POST", `/tenants/${IDS.tenant}/keys/rotate`);
    const latest = (await callJson(h.dispatcher, "GET", keysUrl)).json as { keys: { kid: string }[] };
    expect(latest.keys.map((k) => k.kid)).not.toContain(oldKid);
    await expect(jwtVerify(before, createLocalJWKSet(latest as never))).rejects.toThrow();
  });
});

describe("faults and counters", () => {
  it("fails the next requests with 503, then serves again", async () => {
    await admin("POST", "/faults", { count: 2, kind: "status", status: 503 });
    expect((await h.token(appParams)).status).toBe(503);
    const second = await h.token(appParams);
    expect(second.status).toBe(503);
    expect(second.json.error).toBe("temporarily_unavailable");
    expect((await h.token(appParams)).status).toBe(200);
  });

  it("throttles with 429 and Retry-After", async () => {
    await admin("POST", "/faults", { count: 1, kind: "status", status: 429, retryAfterSeconds: 7 });
    const r = await h.token(appParams);
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("7");
  });

  it("applies a fault to one client only when asked", async () => {
    await admin("POST", "/faults", { count: 1, kind: "status", status: 500, clientId: IDS.blueprint });
    expect((await h.token(appParams)).status).toBe(200);
    const blueprint = await h.token({
      ...appParams,
      client_id: IDS.blueprint,
      client_secret: IDS.blueprintSecret,
    });
    expect(blueprint.status).toBe(500);
  });

  it("delays a request and then answers it", async () => {
    await admin("POST", "/faults", { count: 1, kind: "delay", delayMs: 200 });
    expect((await h.token(appParams)).status).toBe(200);
    expect((await admin("GET", "/faults")).json.pending).toEqual([]);
  });

  it("drops the connection", async () => {
    await admin("POST", "/faults", { count: 1, kind: "drop" });
    await expect(h.token(appParams)).rejects.toThrow();
    expect((await h.token(appParams)).status).toBe(200);
  });

  it("rejects a malformed fault as a problem", async () => {
    const r = await admin("POST", "/faults", { count: 0, kind: "explode" });
    expect(r.status).toBe(400);
    expect(r.headers.get("content-type")).toContain("application/problem+json");
  });

  it("counts token requests per client and grant", async () => {
    await admin("POST", "/counters/reset");
    await h.token(appParams);
    await h.token(appParams);
    await h.t1();
    const { json } = await admin("GET", "/counters");
    expect(json).toEqual({
      total: 3,
      byClient: {
        [IDS.app]: { client_credentials: 2 },
        [IDS.blueprint]: { "client_credentials+fmi_path": 1 },
      },
      requests: { total: 3, byRoute: { [`POST /${IDS.tenant}/oauth2/v2.0/token`]: 3 } },
    });
  });
});

describe("directory administration", () => {
  it("adds an application and a grant at run time", async () => {
    const appId = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    const added = await admin("POST", `/tenants/${IDS.tenant}/applications`, {
      appId,
      clientSecrets: [{ value: "new-app-secret" }],
    });
    expect(added.status).toBe(201);
    expect(added.json).toMatchObject({ appId, objectId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    await admin("POST", `/tenants/${IDS.tenant}/grants`, {
      type: "application",
      clientAppId: appId,
      resource: IDS.weather,
      roles: ["Forecast.Read"],
    });
    const token = await h.accessToken({
      ...appParams,
      client_id: appId,
      client_secret: "new-app-secret",
      scope: "api://contoso-weather/.default",
    });
    expect(claimsOf(token).roles).toEqual(["Forecast.Read"]);
  });

  it("refuses an invalid object and changes nothing", async () => {
    const r = await admin("POST", `/tenants/${IDS.tenant}/agentIdentities`, {
      appId: "not-a-guid",
      blueprintAppId: IDS.app,
    });
    expect(r.status).toBe(400);
    expect(String(r.json.detail)).toContain("appId: must be a GUID");
    expect(String(r.json.detail)).toContain("is not an agentIdentityBlueprint");
    const dir = (await admin("GET", "/directory")).json as { tenants: { agentIdentities: unknown[] }[] };
    expect(dir.tenants[0]?.agentIdentities).toHaveLength(2);
  });

  it("replaces the whole directory", async () => {
    const dir = (await admin("GET", "/directory")).json;
    expect((await admin("PUT", "/directory", dir)).status).toBe(200);
    expect((await admin("PUT", "/directory", { tenants: [{ id: "x" }] })).status).toBe(400);
  });

  it("adds and removes federated identity credentials", async () => {
    const path = `/tenants/${IDS.tenant}/applications/${IDS.blueprint}/federatedIdentityCredentials`;
    const fic = {
      name: "ci-github",
      issuer: "https://issuer.example",
      subject: "repo:x",
      audiences: ["api://AzureADTokenExchange"],
    };
    expect((await admin("POST", path, fic)).status).toBe(201);
    expect((await admin("POST", path, fic)).status).toBe(400);
    expect((await admin("DELETE", `${path}/ci-github`)).status).toBe(204);
    expect((await admin("DELETE", `${path}/ci-github`)).status).toBe(404);
  });

  it("shortens token lifetimes through settings", async () => {
    await admin("POST", "/settings", { accessTokenLifetimeSeconds: 60 });
    const r = await h.token(appParams);
    expect(r.json.expires_in).toBe(60);
    await admin("POST", "/settings", { accessTokenLifetimeSeconds: 3599 });
  });
});

describe("logs", () => {
  it("say what was issued and rejected, and never contain a token or secret", async () => {
    const issued: string[] = [await h.accessToken(appParams), await h.t1()];
    await h.token({ ...appParams, client_secret: "a-wrong-secret-value" });
    const t1 = await h.t1();
    const r = await h.token(h.agentParams(t1));
    issued.push(t1, String(r.json.access_token));
    const text = h.logLines.join("");
    expect(text).toContain('"msg":"token issued"');
    expect(text).toContain('"code":"AADSTS7000215"');
    for (const token of issued) expect(text).not.toContain(token.split(".")[2]);
    expect(text).not.toContain(IDS.appSecret);
    expect(text).not.toContain("a-wrong-secret-value");
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/);
  });

  it("answers its health check", async () => {
    expect((await admin("GET", "/healthz")).json).toEqual({ status: "ok" });
  });

  it("answers unknown paths with a problem", async () => {
    const r = await fetch(`${h.emulator.url}/nothing/here`, { dispatcher: h.dispatcher });
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toContain("application/problem+json");
  });
});
