import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Answer,
  baseEnv,
  call,
  claimsOf,
  clientOf,
  type Downstream,
  type Emu,
  IDS,
  sleep,
  startDownstream,
  startEmu,
  startTestSidecar,
  type TestSidecar,
  tokenOf,
} from "./harness.ts";

const GRAPH_DEFAULT = "https://graph.microsoft.com/.default";

let emu: Emu;
let downstream: Downstream;
let open: TestSidecar; // overrides allowed on every route
let strict: TestSidecar; // Microsoft's default gates

function expectProblem(answer: Answer, status: number, detail?: RegExp): void {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(answer.json).toMatchObject({
    status,
    type: expect.stringMatching(/^https:\/\//),
    title: expect.any(String),
  });
  if (detail) expect(String(answer.json.detail)).toMatch(detail);
}

function expectNoCache(answer: Answer): void {
  expect(answer.headers.get("cache-control")).toBe("no-cache, no-store, must-revalidate");
  expect(answer.headers.get("pragma")).toBe("no-cache");
  expect(answer.headers.get("expires")).toBe("0");
}

beforeAll(async () => {
  emu = await startEmu();
  downstream = await startDownstream();
  const apis = {
    "DownstreamApis__graph-app__Scopes__0": GRAPH_DEFAULT,
    "DownstreamApis__graph-app__RequestAppToken": "true",
    "DownstreamApis__graph-app__BaseUrl": "https://graph.microsoft.com/v1.0/",
    DownstreamApis__graph__Scopes: "https://graph.microsoft.com/User.Read",
    DownstreamApis__weather__BaseUrl: `${downstream.url}/`,
    DownstreamApis__weather__RelativePath: "echo",
    DownstreamApis__weather__Scopes__0: "api://contoso-weather/.default",
    DownstreamApis__weather__RequestAppToken: "true",
    DownstreamApis__weather__ExtraHeaderParameters__X_Configured: "yes",
    DownstreamApis__noscopes__BaseUrl: `${downstream.url}/`,
    // Delegated: the blueprint holds a delegated grant for the weather API only.
    "DownstreamApis__weather-user__BaseUrl": `${downstream.url}/echo`,
    "DownstreamApis__weather-user__Scopes__0": "api://contoso-weather/Forecast.Read",
  };
  open = await startTestSidecar(
    emu,
    baseEnv(emu, {
      ...apis,
      Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
      Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated: "true",
    }),
    { jwksCooldownMs: 0, downstreamTimeoutMs: 1000 },
  );
  strict = await startTestSidecar(emu, baseEnv(emu, { ...apis, AzureAd__Scopes: "access_as_user" }), {
    jwksCooldownMs: 0,
  });
});

afterAll(async () => {
  await open?.close();
  await strict?.close();
  await downstream?.close();
  await emu?.close();
});

describe("health", () => {
  it("answers Healthy on /healthz for any method and Ready on /readyz", async () => {
    for (const method of ["GET", "POST", "HEAD"]) {
      const r = await call(`${open.url}/healthz`, { method });
      expect(r.status).toBe(200);
      if (method !== "HEAD") expect(r.text).toBe("Healthy");
    }
    const ready = await call(`${open.url}/readyz`);
    expect([ready.status, ready.text]).toEqual([200, "Ready"]);
  });
});

describe("GET /AuthorizationHeaderUnauthenticated/{apiName}", () => {
  it("returns the blueprint's app token as {authorizationHeader} with no-cache headers", async () => {
    const r = await call(`${open.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(Object.keys(r.json)).toEqual(["authorizationHeader"]);
    expectNoCache(r);
    const claims = claimsOf(r);
    // Graph's tokens are v1 (appid, not azp), as Entra issues them.
    expect(claims).toMatchObject({ aud: "https://graph.microsoft.com", appid: IDS.blueprint, idtyp: "app" });
  });

  it("returns the same cached token on the next call", async () => {
    const a = await call(`${open.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    const b = await call(`${open.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(tokenOf(b)).toBe(tokenOf(a));
  });

  it("answers a repeated URL (served below fastify from the cache) exactly as the route does", async () => {
    const url = `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}&repeat=1`;
    const first = await call(url); // routed, validated and resolved by fastify
    const again = await call(url); // the cached answer for a known URL
    const third = await call(url); // the same, with the headers built for this token already
    for (const repeat of [again, third]) {
      expect(repeat.status).toBe(200);
      expect(repeat.text).toBe(first.text);
      for (const name of ["content-type", "content-length", "cache-control", "pragma", "expires"]) {
        expect(repeat.headers.get(name), name).toBe(first.headers.get(name));
      }
    }
    expectNoCache(again);
    // Another method on the same URL still goes through fastify's routing.
    const post = await call(url, { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET"]);
  });

  it("AgentIdentity gives the agent's token, with the blueprint as parent", async () => {
    const r = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
    );
    expect(claimsOf(r)).toMatchObject({ appid: IDS.agent, xms_par_app_azp: IDS.blueprint, idtyp: "app" });
  });

  it("AgentIdentity + AgentUserId or AgentUsername gives the agent user's token", async () => {
    const byId = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity=${IDS.agent}&AgentUserId=${IDS.agentUser}`,
    );
    expect(claimsOf(byId)).toMatchObject({ appid: IDS.agent, oid: IDS.agentUser, idtyp: "user" });
    const byUpn = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph?agentidentity=${IDS.agent}&agentusername=${IDS.agentUserUpn}`,
    );
    expect(claimsOf(byUpn)).toMatchObject({ appid: IDS.agent, oid: IDS.agentUser });
  });

  it("refuses an unknown API with 404, even with optionsOverride.Scopes", async () => {
    expectProblem(
      await call(`${open.url}/AuthorizationHeaderUnauthenticated/nope`),
      404,
      /'nope' is not configured/,
    );
    expectProblem(
      await call(
        `${open.url}/AuthorizationHeaderUnauthenticated/nope?optionsOverride.Scopes=${GRAPH_DEFAULT}&optionsOverride.RequestAppToken=true`,
      ),
      404,
    );
  });

  it("refuses the agent parameter combinations Microsoft's docs reject", async () => {
    const base = `${open.url}/AuthorizationHeaderUnauthenticated/graph`;
    expectProblem(
      await call(`${base}?AgentUsername=${IDS.agentUserUpn}`),
      400,
      /AgentUsername requires AgentIdentity/,
    );
    expectProblem(
      await call(`${base}?AgentUserId=${IDS.agentUser}`),
      400,
      /AgentUserId requires AgentIdentity/,
    );
    expectProblem(
      await call(
        `${base}?AgentIdentity=${IDS.agent}&AgentUsername=${IDS.agentUserUpn}&AgentUserId=${IDS.agentUser}`,
      ),
      400,
      /mutually exclusive/,
    );
    expectProblem(
      await call(`${base}?AgentIdentity=${IDS.agent}&AgentUserId=not-a-guid`),
      400,
      /AgentUserId must be a valid GUID/,
    );
    expectProblem(await call(`${base}?AgentIdentity=bob`), 400, /AgentIdentity/);
  });

  it("answers 400 'No scopes found' for an API without scopes, and uses optionsOverride.Scopes", async () => {
    expectProblem(
      await call(`${open.url}/AuthorizationHeaderUnauthenticated/noscopes`),
      400,
      /^No scopes found for the API 'noscopes'/,
    );
    const r = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/noscopes?optionsOverride.Scopes=api://contoso-weather/.default&optionsOverride.RequestAppToken=true&AgentIdentity=${IDS.agent}`,
    );
    expect(claimsOf(r)).toMatchObject({
      aud: expect.stringMatching(/contoso-weather|20088ae2/),
      azp: IDS.agent,
    });
  });

  it("repeated optionsOverride.Scopes replace the configured ones; an app token needs /.default", async () => {
    expectProblem(
      await call(
        `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes=https://graph.microsoft.com/User.Read`,
      ),
      400,
      /'\/.default'/,
    );
    const r = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes=api://contoso-weather/.default&optionsOverride.Scopes=&AgentIdentity=${IDS.agent}`,
    );
    expect(claimsOf(r).roles).toEqual(["Forecast.Read"]);
  });

  it("refuses malformed overrides and reserved headers with 400", async () => {
    const base = `${open.url}/AuthorizationHeaderUnauthenticated/graph-app`;
    expectProblem(await call(`${base}?optionsOverride.RequestAppToken=yes`), 400, /RequestAppToken/);
    expectProblem(
      await call(`${base}?optionsOverride.AcquireTokenOptions.ForceRefresh=maybe`),
      400,
      /ForceRefresh/,
    );
    expectProblem(await call(`${base}?optionsOverride.AcquireTokenOptions.Tenant=common`), 400, /Tenant/);
    expectProblem(await call(`${base}?optionsOverride.AcquireTokenOptions.Claims={bad`), 400, /Claims/);
    expectProblem(await call(`${base}?optionsOverride.HttpMethod=FETCH`), 400, /HttpMethod/);
    expectProblem(
      await call(`${base}?optionsOverride.ExtraHeaderParameters.Authorization=x`),
      400,
      /reserved/,
    );
    expectProblem(
      await call(`${base}?optionsOverride.ExtraHeaderParameters.X-Forwarded-For=x`),
      400,
      /reserved/,
    );
    expectProblem(
      await call(`${base}?optionsOverride.AcquireTokenOptions.PopPublicKey=abc`),
      400,
      /not supported/,
    );
  });

  it("ForceRefresh gets a new token; Tenant by domain and CorrelationId are honoured", async () => {
    const url = `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`;
    const first = tokenOf(await call(url));
    await emu.resetCounters();
    const forced = await call(`${url}&optionsOverride.AcquireTokenOptions.ForceRefresh=true`);
    expect(tokenOf(forced)).not.toBe(first);
    expect((await emu.counters()).byClient[IDS.agent]?.client_credentials).toBe(1);
    const byDomain = await call(
      `${url}&optionsOverride.AcquireTokenOptions.Tenant=${IDS.domain}&optionsOverride.AcquireTokenOptions.CorrelationId=8d5c8d0e-52b4-4f7e-8a8d-1a2b3c4d5e6f`,
    );
    expect(claimsOf(byDomain)).toMatchObject({ tid: IDS.tenant, appid: IDS.agent });
  });

  it("Claims override goes to Entra with the claims, bypassing the cached token", async () => {
    const url = `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`;
    const cached = tokenOf(await call(url));
    await emu.resetCounters();
    const claims = encodeURIComponent('{"access_token":{"xms_cc":{"values":["cp1"]}}}');
    const r = await call(`${url}&optionsOverride.AcquireTokenOptions.Claims=${claims}`);
    expect(r.status, r.text).toBe(200);
    expect(tokenOf(r)).not.toBe(cached);
    expect((await emu.counters()).byClient[IDS.agent]?.client_credentials).toBe(1);
  });

  it("serves no metrics unless a metrics port is configured", () => {
    expect(open.sidecar.metricsUrl).toBeUndefined();
  });

  it("FmiPath override sends fmi_path on the blueprint's own app token request", async () => {
    await emu.resetCounters();
    const r = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes=api://AzureADTokenExchange/.default&optionsOverride.AcquireTokenOptions.FmiPath=${IDS.agent}&optionsOverride.AcquireTokenOptions.ForceRefresh=true`,
    );
    expect(r.status, r.text).toBe(200);
    expect((await emu.counters()).byClient[IDS.blueprint]?.["client_credentials+fmi_path"]).toBe(1);
  });

  it("maps an Entra refusal to 401 with the AADSTS message", async () => {
    // The other blueprint's agent is not a child of our blueprint: Entra refuses the exchange.
    const r = await call(
      `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.otherAgent}`,
    );
    expectProblem(r, 401, /AADSTS\d+/);
    expect(r.text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });

  it("a user-token API without a user answers 401", async () => {
    expectProblem(await call(`${open.url}/AuthorizationHeaderUnauthenticated/graph`), 401, /user token/);
  });
});

describe("override gates (Microsoft's defaults)", () => {
  it("refuses agent parameters and overrides on the unauthenticated routes unless allowed", async () => {
    expectProblem(
      await call(`${strict.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`),
      403,
      /Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated=true/,
    );
    expectProblem(
      await call(
        `${strict.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes=${GRAPH_DEFAULT}`,
      ),
      403,
    );
    expectProblem(
      await call(`${strict.url}/DownstreamApiUnauthenticated/weather?optionsOverride.RelativePath=x`, {
        method: "POST",
      }),
      403,
      /CallDownstreamApiUnauthenticated/,
    );
    const plain = await call(`${strict.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(claimsOf(plain).appid).toBe(IDS.blueprint);
  });

  it("always ignores optionsOverride.BaseUrl (not an override, so not gated)", async () => {
    const r = await call(
      `${strict.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.BaseUrl=https://evil.example`,
    );
    expect(r.status).toBe(200);
  });

  it("allows agent parameters on the authenticated route by default", async () => {
    const user = await emu.userToken();
    const r = await call(`${strict.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`, {
      headers: { authorization: `Bearer ${user}` },
    });
    expect(claimsOf(r)).toMatchObject({ appid: IDS.agent, oid: IDS.user, idtyp: "user" });
  });
});

describe("GET /AuthorizationHeader/{apiName} (inbound bearer)", () => {
  it("answers 401 with a bare challenge without a token, invalid_token for a bad one", async () => {
    const none = await call(`${open.url}/AuthorizationHeader/graph`);
    expect([none.status, none.text, none.headers.get("www-authenticate")]).toEqual([401, "", "Bearer"]);
    const garbage = await call(`${open.url}/AuthorizationHeader/graph`, {
      headers: { authorization: "Bearer abc.def.ghi" },
    });
    expect([garbage.status, garbage.headers.get("www-authenticate")]).toEqual([
      401,
      'Bearer error="invalid_token"',
    ]);
    const wrongAudience = await emu.userToken({ audience: "https://graph.microsoft.com" });
    const wa = await call(`${open.url}/AuthorizationHeader/graph`, {
      headers: { authorization: `Bearer ${wrongAudience}` },
    });
    expect(wa.status).toBe(401);
    const expired = await emu.userToken({ lifetimeSeconds: -600 });
    const ex = await call(`${open.url}/AuthorizationHeader/graph`, {
      headers: { authorization: `Bearer ${expired}` },
    });
    expect(ex.status).toBe(401);
  });

  it("exchanges the user's token on behalf of the user (blueprint) and through an agent", async () => {
    const user = await emu.userToken();
    const obo = await call(`${open.url}/AuthorizationHeader/weather-user`, {
      headers: { authorization: `Bearer ${user}` },
    });
    // The weather API is v2 and asks for no idtyp on user tokens (include_user_token), so there is none.
    expect(claimsOf(obo)).toMatchObject({
      oid: IDS.user,
      azp: IDS.blueprint,
      scp: "Forecast.Read",
    });
    expect(claimsOf(obo).idtyp).toBeUndefined();
    const agentObo = await call(`${open.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`, {
      headers: { authorization: `Bearer ${user}` },
    });
    expect(claimsOf(agentObo)).toMatchObject({
      oid: IDS.user,
      appid: IDS.agent,
      xms_par_app_azp: IDS.blueprint,
    });
  });

  it("keeps the tokens of different users apart", async () => {
    const alice = await emu.userToken();
    const agentUser = await emu.userToken({ userId: IDS.agentUser });
    const a = await call(`${open.url}/AuthorizationHeader/weather-user`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    const b = await call(`${open.url}/AuthorizationHeader/weather-user`, {
      headers: { authorization: `Bearer ${agentUser}` },
    });
    expect(claimsOf(a).oid).toBe(IDS.user);
    expect(claimsOf(b).oid).toBe(IDS.agentUser);
  });

  it("accepts tokens signed with a rotated key (JWKS re-read on an unknown kid)", async () => {
    await emu.admin("POST", `tenants/${IDS.tenant}/keys/rotate`);
    const user = await emu.userToken();
    const r = await call(`${open.url}/AuthorizationHeader/weather-user`, {
      headers: { authorization: `Bearer ${user}` },
    });
    expect(r.status, r.text).toBe(200);
  });
});

describe("a bearer token on the …Unauthenticated routes (as ASP.NET's authentication middleware)", () => {
  it("makes a valid token the request's user, so a user API works there as in Microsoft's sidecar", async () => {
    const user = await emu.userToken();
    const r = await call(`${open.url}/AuthorizationHeaderUnauthenticated/weather-user`, {
      headers: { authorization: `Bearer ${user}` },
    });
    expect(claimsOf(r)).toMatchObject({ oid: IDS.user, azp: IDS.blueprint, scp: "Forecast.Read" });
    const down = await call(`${open.url}/DownstreamApiUnauthenticated/weather-user`, {
      method: "POST",
      headers: { authorization: `Bearer ${user}` },
    });
    expect(down.json.statusCode, down.text).toBe(200);
  });

  it("ignores an invalid token: the request goes on anonymous (no 401 challenge)", async () => {
    const bad = { authorization: "Bearer not.a.token" };
    const app = await call(`${open.url}/AuthorizationHeaderUnauthenticated/graph-app`, { headers: bad });
    expect(clientOf(app)).toBe(IDS.blueprint);
    expect(claimsOf(app)).toMatchObject({ idtyp: "app" });
    expect(app.headers.get("www-authenticate")).toBeNull();
    const user = await call(`${open.url}/AuthorizationHeaderUnauthenticated/weather-user`, { headers: bad });
    expect(user.status).toBe(401);
    expect(String(user.json.detail)).toMatch(/carries no user/);
  });

  it("never answers a bearer request from the URL cache of anonymous ones", async () => {
    const url = `${open.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`;
    const anonymous = await call(url);
    await call(url); // now answered below fastify from the URL cache
    const expired = await emu.userToken({ lifetimeSeconds: -3600 });
    const withBearer = await call(url, { headers: { authorization: `Bearer ${expired}` } });
    expect(tokenOf(withBearer)).toBe(tokenOf(anonymous));
    expect(withBearer.status).toBe(200);
  });
});

describe("GET /Validate", () => {
  it("returns protocol, token and the raw claims", async () => {
    const user = await emu.userToken();
    const r = await call(`${open.url}/Validate`, { headers: { authorization: `Bearer ${user}` } });
    expect(r.status, r.text).toBe(200);
    expect(r.json.protocol).toBe("Bearer");
    expect(r.json.token).toBe(user);
    expect(r.json.claims).toMatchObject({ oid: IDS.user, aud: IDS.blueprint });
    expect(r.json.claims).toEqual(JSON.parse(Buffer.from(user.split(".")[1] ?? "", "base64url").toString()));
    expectNoCache(r);
  });

  it("enforces AzureAd:Scopes with Microsoft's 403", async () => {
    const ok = await emu.userToken({ scopes: ["access_as_user"] });
    expect(
      (await call(`${strict.url}/Validate`, { headers: { authorization: `Bearer ${ok}` } })).status,
    ).toBe(200);
    const other = await emu.userToken({ scopes: ["something_else"] });
    const r = await call(`${strict.url}/Validate`, { headers: { authorization: `Bearer ${other}` } });
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/^IDW10203: .*'access_as_user'/);
  });

  it("answers 401 without a token", async () => {
    expect((await call(`${open.url}/Validate`)).status).toBe(401);
  });
});

describe("POST /DownstreamApi(Unauthenticated)/{apiName}", () => {
  it("calls the API with the token, forwards the body with its Content-Type and wraps the answer", async () => {
    const before = downstream.requests.length;
    const r = await call(
      `${open.url}/DownstreamApiUnauthenticated/weather?AgentIdentity=${IDS.agent}&optionsOverride.HttpMethod=PUT&optionsOverride.ExtraQueryParameters.city=Paris&optionsOverride.ExtraHeaderParameters.X-Trace=abc`,
      {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "hello",
      },
    );
    expect(r.status, r.text).toBe(200);
    expectNoCache(r);
    expect(r.json.statusCode).toBe(200);
    expect(r.json.headers).toMatchObject({ "Content-Type": ["application/json; charset=utf-8"] });
    const seen = downstream.requests[before];
    expect(seen).toMatchObject({ method: "PUT", url: "/echo?city=Paris", body: "hello" });
    expect(seen?.headers["content-type"]).toBe("text/plain");
    expect(seen?.headers.accept).toBe("application/json");
    expect(seen?.headers["x-trace"]).toBe("abc");
    expect(seen?.headers.x_configured).toBe("yes");
    const auth = String(seen?.headers.authorization);
    expect(auth).toMatch(/^Bearer ey/);
    expect(JSON.parse(String(r.json.content))).toMatchObject({ method: "PUT", body: "hello" });
  });

  it("returns HTTP 200 whatever the downstream status, with only content headers", async () => {
    const r = await call(
      `${open.url}/DownstreamApiUnauthenticated/weather?optionsOverride.RelativePath=status/202&AgentIdentity=${IDS.agent}`,
      {
        method: "POST",
      },
    );
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      statusCode: 202,
      headers: { "Content-Type": ["text/plain"] },
      content: "accepted",
    });
    // Only content headers are returned, in .NET's casing (Microsoft's DownstreamApiResult).
    const names = Object.keys(r.json.headers as object);
    expect(names.every((n) => /^(Content-Type|Content-Length)$/.test(n))).toBe(true);
  });

  it("does not follow redirects by default", async () => {
    const r = await call(
      `${open.url}/DownstreamApiUnauthenticated/weather?optionsOverride.RelativePath=redirect&AgentIdentity=${IDS.agent}`,
      {
        method: "POST",
      },
    );
    expect(r.json.statusCode).toBe(302);
  });

  it("follows same-origin redirects with the token when Sidecar__AllowOutboundRedirects is true", async () => {
    const s = await startTestSidecar(
      emu,
      baseEnv(emu, {
        DownstreamApis__hop__BaseUrl: `${downstream.url}/`,
        DownstreamApis__hop__RelativePath: "redirect",
        DownstreamApis__hop__Scopes__0: "api://contoso-weather/.default",
        DownstreamApis__hop__RequestAppToken: "true",
        Sidecar__AllowOutboundRedirects: "true",
      }),
    );
    try {
      const before = downstream.requests.length;
      const r = await call(`${s.url}/DownstreamApiUnauthenticated/hop`, { method: "POST" });
      expect(r.json.statusCode, r.text).toBe(200);
      expect(downstream.requests.slice(before).map((q) => q.url)).toEqual(["/redirect", "/echo"]);
      expect(String(downstream.requests.at(-1)?.headers.authorization)).toMatch(/^Bearer /);
    } finally {
      await s.close();
    }
  });

  it("drops the token when a redirect leaves the origin, and the body when the method turns into GET", async () => {
    const other = await startDownstream(); // another port: another origin
    const s = await startTestSidecar(
      emu,
      baseEnv(emu, {
        DownstreamApis__away__BaseUrl: `${downstream.url}/`,
        DownstreamApis__away__RelativePath: "redirect-to",
        DownstreamApis__away__HttpMethod: "POST",
        DownstreamApis__away__Scopes__0: "api://contoso-weather/.default",
        DownstreamApis__away__RequestAppToken: "true",
        Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated: "true",
        Sidecar__AllowOutboundRedirects: "true",
      }),
    );
    const hop = (status: number, to: string) =>
      call(
        `${s.url}/DownstreamApiUnauthenticated/away?optionsOverride.ExtraQueryParameters.status=${status}&optionsOverride.ExtraQueryParameters.to=${encodeURIComponent(to)}`,
        { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" },
      );
    try {
      // 307 keeps method and body, but not the token, on another origin.
      let r = await hop(307, `${other.url}/echo`);
      expect(r.json.statusCode, r.text).toBe(200);
      expect(String(downstream.requests.at(-1)?.headers.authorization)).toMatch(/^Bearer ey/);
      let seen = other.requests.at(-1);
      expect(seen).toMatchObject({ method: "POST", url: "/echo", body: "hello" });
      expect(seen?.headers["content-type"]).toBe("text/plain");
      expect(seen?.headers.authorization).toBeUndefined();

      // 302 after a POST becomes a GET without the body or its content headers.
      r = await hop(302, `${other.url}/echo`);
      expect(r.json.statusCode, r.text).toBe(200);
      seen = other.requests.at(-1);
      expect(seen).toMatchObject({ method: "GET", url: "/echo", body: "" });
      expect(seen?.headers["content-type"]).toBeUndefined();
      expect(seen?.headers.authorization).toBeUndefined();

      // 303 on the same origin: GET, token kept.
      r = await hop(303, "/echo");
      expect(r.json.statusCode, r.text).toBe(200);
      seen = downstream.requests.at(-1);
      expect(seen).toMatchObject({ method: "GET", url: "/echo", body: "" });
      expect(String(seen?.headers.authorization)).toMatch(/^Bearer ey/);
    } finally {
      await s.close();
      await other.close();
    }
  });

  it("retries once with the claims of a downstream claims challenge", async () => {
    await emu.resetCounters();
    const r = await call(
      `${open.url}/DownstreamApiUnauthenticated/weather?optionsOverride.RelativePath=claims&AgentIdentity=${IDS.agent}`,
      {
        method: "POST",
      },
    );
    expect(r.json).toMatchObject({ statusCode: 200, content: '{"ok":true}' });
    expect((await emu.counters()).byClient[IDS.agent]?.client_credentials).toBe(1);
  });

  it("answers 504 when the API is too slow and 502 when it cannot be reached", async () => {
    const slow = await call(
      `${open.url}/DownstreamApiUnauthenticated/weather?optionsOverride.RelativePath=slow&AgentIdentity=${IDS.agent}`,
      {
        method: "POST",
      },
    );
    expectProblem(slow, 504, /did not answer in time/);
    const env = baseEnv(emu, {
      DownstreamApis__dead__BaseUrl: "http://127.0.0.1:1/",
      DownstreamApis__dead__Scopes__0: GRAPH_DEFAULT,
      DownstreamApis__dead__RequestAppToken: "true",
    });
    const s = await startTestSidecar(emu, env);
    try {
      expectProblem(
        await call(`${s.url}/DownstreamApiUnauthenticated/dead`, { method: "POST" }),
        502,
        /could not be reached/,
      );
    } finally {
      await s.close();
    }
    await sleep(0);
  });

  it("requires a bearer token on /DownstreamApi and uses OBO", async () => {
    expect((await call(`${open.url}/DownstreamApi/weather`, { method: "POST" })).status).toBe(401);
    const user = await emu.userToken();
    const r = await call(`${open.url}/DownstreamApi/weather-user`, {
      method: "POST",
      headers: { authorization: `Bearer ${user}` },
    });
    expect(r.json.statusCode, r.text).toBe(200);
    const auth = String(downstream.requests.at(-1)?.headers.authorization).slice(7);
    expect(JSON.parse(Buffer.from(auth.split(".")[1] ?? "", "base64url").toString())).toMatchObject({
      oid: IDS.user,
    });
  });

  it("is POST only: other methods get ASP.NET routing's 405 with Allow, as do non-GET calls of the GET routes", async () => {
    for (const [method, path, allow] of [
      ["GET", "/DownstreamApiUnauthenticated/weather", "POST"],
      ["PUT", "/DownstreamApi/weather", "POST"],
      ["POST", "/AuthorizationHeaderUnauthenticated/graph-app", "GET"],
      ["DELETE", "/AuthorizationHeader/graph", "GET"],
      ["POST", "/Validate", "GET"],
    ] as const) {
      const before = downstream.requests.length;
      const r = await call(`${open.url}${path}`, { method });
      expect(downstream.requests.length).toBe(before);
      expect([method, path, r.status, r.headers.get("allow"), r.text]).toEqual([
        method,
        path,
        405,
        allow,
        "",
      ]);
    }
  });
});
