import { describe, expect, it } from "vitest";
import { TOKEN_FILE } from "../../src/api/constants.ts";
import { type EnvVar, renderSidecarSettings } from "../../src/api/render.ts";
import type { AgentIdentity, AgentIdentitySpec } from "../../src/api/types.ts";

const TENANT = "11111111-1111-1111-1111-111111111111";
const BLUEPRINT = "22222222-2222-2222-2222-222222222222";
const AGENT = "33333333-3333-3333-3333-333333333333";

function identity(spec: Partial<AgentIdentitySpec>): AgentIdentity {
  return {
    metadata: { name: "agent", namespace: "ns" },
    spec: { tenantId: TENANT, blueprint: { clientId: BLUEPRINT }, serviceAccountName: "agent", ...spec },
  };
}

function asMap(env: EnvVar[]): Record<string, unknown> {
  return Object.fromEntries(env.map((e) => [e.name, "value" in e ? e.value : e.valueFrom]));
}

describe("renderSidecarSettings", () => {
  const cases: Array<{
    name: string;
    spec: Partial<AgentIdentitySpec>;
    expected: Record<string, unknown>;
    absent?: string[];
  }> = [
    {
      name: "workload identity (the default) reads the projected token file",
      spec: {},
      expected: {
        AzureAd__Instance: "https://login.microsoftonline.com/",
        AzureAd__TenantId: TENANT,
        AzureAd__ClientId: BLUEPRINT,
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
        AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: TOKEN_FILE,
        Kestrel__Endpoints__Http__Url: "http://127.0.0.1:5000",
      },
    },
    {
      name: "a client secret comes from the Secret by reference, never by value",
      spec: {
        blueprint: {
          clientId: BLUEPRINT,
          credential: { clientSecret: { secretRef: { name: "bp", key: "secret" } } },
        },
      },
      expected: {
        AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
        AzureAd__ClientCredentials__0__ClientSecret: { secretKeyRef: { name: "bp", key: "secret" } },
      },
    },
    {
      name: "a user-assigned managed identity",
      spec: { blueprint: { clientId: BLUEPRINT, credential: { managedIdentity: { clientId: AGENT } } } },
      expected: {
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFromManagedIdentity",
        AzureAd__ClientCredentials__0__ManagedIdentityClientId: AGENT,
      },
    },
    {
      name: "an instance without a trailing slash, a custom port, overrides and log level",
      spec: {
        instance: "https://127.0.0.1:9443",
        sidecar: {
          port: 6000,
          logLevel: "Debug",
          allowOverrides: { getAuthorizationHeaderUnauthenticated: true, callDownstreamApi: false },
        },
      },
      expected: {
        AzureAd__Instance: "https://127.0.0.1:9443/",
        Kestrel__Endpoints__Http__Url: "http://127.0.0.1:6000",
        Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
        Sidecar__AllowOverrides__CallDownstreamApi: "false",
        Logging__LogLevel__Default: "Debug",
      },
      absent: [
        "Sidecar__AllowOverrides__GetAuthorizationHeader",
        "Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated",
      ],
    },
    {
      name: "downstream APIs with indexed scopes, headers and query parameters",
      spec: {
        downstreamApis: {
          "graph-app": {
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["https://graph.microsoft.com/.default"],
            requestAppToken: true,
          },
          me: {
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["User.Read", "Mail.Read"],
            relativePath: "me",
            httpMethod: "POST",
            acceptHeader: "application/json",
            contentType: "text/plain",
            extraHeaders: { "x-b": "2", "x-a": "1" },
            extraQueryParameters: { q: "v" },
          },
        },
      },
      expected: {
        "DownstreamApis__graph-app__BaseUrl": "https://graph.microsoft.com/v1.0/",
        "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
        "DownstreamApis__graph-app__RequestAppToken": "true",
        DownstreamApis__me__Scopes__0: "User.Read",
        DownstreamApis__me__Scopes__1: "Mail.Read",
        DownstreamApis__me__RelativePath: "me",
        DownstreamApis__me__HttpMethod: "POST",
        DownstreamApis__me__AcceptHeader: "application/json",
        DownstreamApis__me__ContentType: "text/plain",
        "DownstreamApis__me__ExtraHeaderParameters__x-a": "1",
        "DownstreamApis__me__ExtraHeaderParameters__x-b": "2",
        DownstreamApis__me__ExtraQueryParameters__q: "v",
      },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const env = asMap(renderSidecarSettings(identity(c.spec)).sidecarEnv);
      expect(env).toMatchObject(c.expected);
      for (const name of c.absent ?? []) expect(env).not.toHaveProperty(name);
    });
  }

  it("gives app containers SIDECAR_URL and the agent id, and no credential", () => {
    const settings = renderSidecarSettings(
      identity({
        agentId: AGENT,
        sidecar: { port: 5100 },
        blueprint: {
          clientId: BLUEPRINT,
          credential: { clientSecret: { secretRef: { name: "s", key: "k" } } },
        },
      }),
    );
    expect(settings.appEnv).toEqual([
      { name: "SIDECAR_URL", value: "http://127.0.0.1:5100" },
      { name: "AGENTID_AGENT_ID", value: AGENT },
    ]);
    expect(settings.port).toBe(5100);
  });

  it("renders the same list for the same identity (stable order)", () => {
    const spec = {
      downstreamApis: {
        b: { baseUrl: "https://b/", scopes: ["s"] },
        a: { baseUrl: "https://a/", scopes: ["s"] },
      },
    };
    const names = renderSidecarSettings(identity(spec)).sidecarEnv.map((e) => e.name);
    expect(names.indexOf("DownstreamApis__a__BaseUrl")).toBeLessThan(
      names.indexOf("DownstreamApis__b__BaseUrl"),
    );
    expect(renderSidecarSettings(identity(spec))).toEqual(renderSidecarSettings(identity(spec)));
  });
});
