import { describe, expect, it } from "vitest";
import { loadMsal } from "../../src/sidecar/acquire/msal.ts";
import { entraUnavailable, parseRetryAfter } from "../../src/sidecar/acquire/network.ts";
import { retryDelay, withRetry } from "../../src/sidecar/acquire/retry.ts";
import type { DownstreamApi, SidecarConfig } from "../../src/sidecar/config/types.ts";
import { claimsChallenge, downstreamUrl } from "../../src/sidecar/downstream.ts";
import { bearerToken } from "../../src/sidecar/inbound.ts";
import { isLoopback } from "../../src/sidecar/loopback.ts";
import { parseQuery } from "../../src/sidecar/routes/overrides.ts";
import { effectiveApi, planToken } from "../../src/sidecar/routes/plan.ts";
import { hasAcceptedScope } from "../../src/sidecar/routes/validate.ts";

const AGENT = "81c1b0a3-5f1f-4ddc-ac16-58eb49066eab";
const api: DownstreamApi = {
  name: "graph",
  baseUrl: "https://graph.microsoft.com/v1.0/",
  relativePath: "/me",
  scopes: ["https://graph.microsoft.com/.default"],
  httpMethod: "GET",
  requestAppToken: false,
  acceptHeader: "application/json",
  contentType: "application/json",
  extraHeaders: {},
  extraQuery: { a: "1" },
  acquireTokenOptions: {},
};
const config = { tenantId: "tenant-1" } as SidecarConfig;

function parsed(query: Record<string, string | string[]>) {
  const p = parseQuery(query);
  if ("problems" in p) throw new Error(p.problems.join("; "));
  return p;
}

describe("query parsing", () => {
  it("binds optionsOverride.* case-insensitively, repeats Scopes, last value wins otherwise", () => {
    const p = parsed({
      "optionsoverride.scopes": ["a", "b"],
      "optionsOverride.HttpMethod": ["get", "delete"],
      "OPTIONSOVERRIDE.ExtraHeaderParameters.X-Thing": "v",
      "optionsOverride.AcquireTokenOptions.CorrelationId": "not-a-guid",
      "optionsOverride.Unknown": "ignored",
    });
    expect(p.overrides).toMatchObject({
      present: true,
      scopes: ["a", "b"],
      httpMethod: "DELETE",
      extraHeaders: { "X-Thing": "v" },
    });
    expect(p.overrides.acquireTokenOptions.correlationId).toBeUndefined();
  });

  it("treats BaseUrl alone as no override", () => {
    expect(parsed({ "optionsOverride.BaseUrl": "https://evil" }).overrides).toMatchObject({
      present: false,
      baseUrlIgnored: true,
    });
  });

  it("refuses header injection", () => {
    expect(parseQuery({ "optionsOverride.ExtraHeaderParameters.X-A": "a\r\nHost: evil" })).toHaveProperty(
      "problems",
    );
    expect(parseQuery({ "optionsOverride.AcceptHeader": "a\nb" })).toHaveProperty("problems");
  });
});

describe("flow planning", () => {
  it("picks the flow from RequestAppToken, the agent parameters and the inbound token", () => {
    const app = effectiveApi({ ...api, requestAppToken: true }, undefined);
    expect(planToken(config, app, undefined, undefined)).toMatchObject({ flow: "app", tenant: "tenant-1" });
    expect(planToken(config, app, { agentIdentity: AGENT }, undefined)).toMatchObject({
      flow: "agent-app",
      agentId: AGENT,
    });
    const user = { agentIdentity: AGENT, user: { kind: "oid" as const, value: AGENT } };
    expect(planToken(config, app, user, undefined)).toMatchObject({ flow: "agent-user" });
    const delegated = effectiveApi(api, undefined);
    expect(planToken(config, delegated, undefined, { token: "jwt" })).toMatchObject({
      flow: "obo",
      assertion: "jwt",
    });
    expect(planToken(config, delegated, { agentIdentity: AGENT }, { token: "jwt" })).toMatchObject({
      flow: "agent-obo",
    });
    expect(() => planToken(config, delegated, undefined, undefined)).toThrow(/user token/);
  });

  it("with TenantId=common, uses the user's tenant on their behalf and asks for one otherwise", () => {
    const common = { ...config, tenantId: "common" };
    const delegated = effectiveApi(api, undefined);
    expect(
      planToken(common, delegated, { agentIdentity: AGENT }, { token: "jwt", tenant: "t-user" }),
    ).toMatchObject({
      flow: "agent-obo",
      tenant: "t-user",
    });
    const app = effectiveApi({ ...api, requestAppToken: true }, undefined);
    expect(() => planToken(common, app, { agentIdentity: AGENT }, undefined)).toThrow(/needs a tenant/);
    const pinned = effectiveApi(
      { ...api, requestAppToken: true, acquireTokenOptions: { tenant: "t-app" } },
      undefined,
    );
    expect(planToken(common, pinned, { agentIdentity: AGENT }, undefined)).toMatchObject({ tenant: "t-app" });
    const agentUser = { agentIdentity: AGENT, user: { kind: "oid" as const, value: AGENT } };
    expect(() => planToken(common, delegated, agentUser, { token: "jwt", tenant: "t-user" })).toThrow(
      /needs a tenant/,
    );
  });

  it("overrides replace only what they name (no reset of HttpMethod, unlike Microsoft's merger)", () => {
    const eff = effectiveApi({ ...api, httpMethod: "POST" }, parsed({ "optionsOverride.RelativePath": "x" }));
    expect(eff).toMatchObject({ httpMethod: "POST", relativePath: "x" });
  });

  it("builds the downstream URL as Microsoft does", () => {
    expect(downstreamUrl(effectiveApi(api, undefined))).toBe("https://graph.microsoft.com/v1.0/me?a=1");
  });
});

describe("small parsers", () => {
  it("recognises loopback peers", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", undefined])
      expect(isLoopback(a)).toBe(true);
    for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "128.0.0.1"])
      expect(isLoopback(a)).toBe(false);
  });

  it("parses bearer headers, Retry-After and claims challenges", () => {
    expect(bearerToken("bearer abc")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(parseRetryAfter("7")).toBe(7000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    const claims = '{"access_token":{"nbf":{"essential":true}}}';
    expect(
      claimsChallenge(
        `Bearer realm="", error="insufficient_claims", claims="${Buffer.from(claims).toString("base64")}"`,
      ),
    ).toBe(claims);
    expect(claimsChallenge('Bearer error="invalid_token"')).toBeUndefined();
  });

  it("compares AzureAd:Scopes as one scope, as Microsoft does", () => {
    expect(hasAcceptedScope({ scp: "a b" }, "a")).toBe(true);
    expect(hasAcceptedScope({ scp: "a b" }, "a b")).toBe(false);
  });
});

describe("retry", () => {
  it("retries only transient Entra errors, within bounds, honouring Retry-After", async () => {
    // The same msal-node build the sidecar loads (its errors are told apart with instanceof).
    const msal = await loadMsal();
    const delays: number[] = [];
    let n = 0;
    const result = await withRetry(
      async () => {
        n += 1;
        if (n < 3) throw entraUnavailable(msal, 429, "busy", 1500);
        return "ok";
      },
      { attempts: 4, baseDelayMs: 10, maxDelayMs: 100, maxRetryAfterMs: 5000 },
      async (ms) => {
        delays.push(ms);
      },
    );
    expect([result, delays]).toEqual(["ok", [1500, 1500]]);
    await expect(
      withRetry(async () => {
        throw new Error("AADSTS7000215");
      }),
    ).rejects.toThrow("AADSTS7000215");
    expect(
      retryDelay(
        { attempts: 4, baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 0 },
        3,
        undefined,
        () => 1,
      ),
    ).toBe(400);
  });
});
