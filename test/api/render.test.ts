import { describe, expect, it } from "vitest";
import { TOKEN_FILE } from "../../src/api/constants.ts";
import {
  type EnvVar,
  type RenderResult,
  renderSidecarSettings,
  type SidecarSettings,
} from "../../src/api/render.ts";
import type { AgentIdentityBlueprintSpec, AgentIdentitySpec } from "../../src/api/types.ts";
import { AGENT, BLUEPRINT, blueprint, identity, OTHER_AGENT, TENANT } from "../support/api-fixtures.ts";

function asMap(env: EnvVar[]): Record<string, unknown> {
  return Object.fromEntries(env.map((e) => [e.name, "value" in e ? e.value : e.valueFrom]));
}

function ok(result: RenderResult): SidecarSettings {
  if (!result.ok) throw new Error(`render failed: ${result.reason} ${result.message}`);
  return result.settings;
}

describe("renderSidecarSettings", () => {
  const cases: Array<{
    name: string;
    spec?: Partial<AgentIdentitySpec>;
    bp?: Partial<AgentIdentityBlueprintSpec>;
    expected: Record<string, unknown>;
    absent?: string[];
  }> = [
    {
      name: "workload identity (the default) reads the projected token file; tenant and client id from the blueprint",
      expected: {
        AzureAd__Instance: "https://login.microsoftonline.com/",
        AzureAd__TenantId: TENANT,
        AzureAd__ClientId: BLUEPRINT,
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
        AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: TOKEN_FILE,
        Kestrel__Endpoints__Http__Url: "http://127.0.0.1:5000",
        Sidecar__AgentIdentity: AGENT,
      },
      absent: ["Sidecar__AllowBlueprintToken", "Sidecar__AllowFmiPathOverride"],
    },
    {
      name: "a development secret comes from the identity's Secret by reference, never by value",
      spec: { clientSecretRef: { name: "bp", key: "secret" } },
      bp: { admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] }, developmentSecrets: true }] },
      expected: {
        AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
        AzureAd__ClientCredentials__0__ClientSecret: { secretKeyRef: { name: "bp", key: "secret" } },
      },
      absent: ["AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath"],
    },
    {
      name: "a user-assigned managed identity",
      bp: { credential: { managedIdentity: { clientId: OTHER_AGENT } } },
      expected: {
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFromManagedIdentity",
        AzureAd__ClientCredentials__0__ManagedIdentityClientId: OTHER_AGENT,
      },
    },
    {
      name: "a sovereign cloud's authority host",
      bp: { cloud: "AzureUSGovernment" },
      expected: { AzureAd__Instance: "https://login.microsoftonline.us/" },
    },
    {
      name: "the two widening flags only when the identity asks and the blueprint allows, a custom port, overrides and log level",
      bp: {
        admits: [
          {
            namespaces: ["ns"],
            agents: { allowed: [AGENT] },
            sidecar: { allowBlueprintToken: true, allowFmiPathOverride: true },
          },
        ],
      },
      spec: {
        sidecar: {
          port: 6000,
          logLevel: "Debug",
          allowBlueprintToken: true,
          allowFmiPathOverride: true,
          allowOverrides: { getAuthorizationHeaderUnauthenticated: true, callDownstreamApi: false },
        },
      },
      expected: {
        Kestrel__Endpoints__Http__Url: "http://127.0.0.1:6000",
        Sidecar__AgentIdentity: AGENT,
        Sidecar__AllowBlueprintToken: "true",
        Sidecar__AllowFmiPathOverride: "true",
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
      name: "flags set to false render nothing (the sidecar's default is off)",
      spec: { sidecar: { allowBlueprintToken: false, allowFmiPathOverride: false } },
      expected: { Sidecar__AgentIdentity: AGENT },
      absent: ["Sidecar__AllowBlueprintToken", "Sidecar__AllowFmiPathOverride"],
    },
    {
      name: "downstream APIs with indexed scopes, headers and query parameters",
      spec: {
        downstreamApis: [
          {
            name: "me",
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["User.Read", "Mail.Read"],
            relativePath: "me",
            httpMethod: "POST",
            acceptHeader: "application/json",
            contentType: "text/plain",
            extraHeaders: { "x-b": "2", "x-a": "1" },
            extraQueryParameters: { q: "v" },
          },
          {
            name: "graph-app",
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["https://graph.microsoft.com/.default"],
            requestAppToken: true,
          },
        ],
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
      const env = asMap(ok(renderSidecarSettings(identity(c.spec), blueprint(c.bp))).sidecarEnv);
      expect(env).toMatchObject(c.expected);
      for (const name of c.absent ?? []) expect(env).not.toHaveProperty(name);
    });
  }

  it("locks the sidecar to the agent the operator created and recorded", () => {
    const i = identity({ agent: { create: { displayName: "x" } } });
    expect(renderSidecarSettings(i, blueprint())).toMatchObject({ ok: false, reason: "AgentNotReady" });
    i.status = { agent: { clientId: OTHER_AGENT, created: true } };
    const settings = ok(renderSidecarSettings(i, blueprint()));
    expect(asMap(settings.sidecarEnv).Sidecar__AgentIdentity).toBe(OTHER_AGENT);
    expect(settings.agentClientId).toBe(OTHER_AGENT);
  });

  it("refuses to widen the agent lock where the blueprint does not allow it (never renders the flags)", () => {
    for (const sidecar of [{ allowBlueprintToken: true }, { allowFmiPathOverride: true }]) {
      expect(renderSidecarSettings(identity({ sidecar }), blueprint())).toMatchObject({
        ok: false,
        reason: "SidecarWideningNotAllowed",
      });
    }
  });

  it("refuses a development secret the blueprint does not allow", () => {
    const i = identity({ clientSecretRef: { name: "s", key: "k" } });
    expect(renderSidecarSettings(i, blueprint())).toMatchObject({
      ok: false,
      reason: "DevelopmentSecretsNotAllowed",
    });
  });

  it("refuses a Custom authority host the manager does not allow, and renders an allowed one", () => {
    const bp = blueprint({ cloud: "Custom", authorityHost: "https://login.test" });
    expect(renderSidecarSettings(identity(), bp)).toMatchObject({
      ok: false,
      reason: "AuthorityHostNotAllowed",
    });
    const settings = ok(
      renderSidecarSettings(identity(), bp, { allowedAuthorityHosts: ["https://login.test/"] }),
    );
    expect(asMap(settings.sidecarEnv).AzureAd__Instance).toBe("https://login.test/");
  });

  it("returns what the webhook needs besides the env: port, credential, token lifetime, Secret reference, resources", () => {
    const resources = { requests: { cpu: "10m" } };
    const settings = ok(
      renderSidecarSettings(
        identity({ sidecar: { port: 5100, tokenExpirationSeconds: 7200, resources } }),
        blueprint(),
      ),
    );
    expect(settings).toMatchObject({
      port: 5100,
      credential: "workloadIdentity",
      tokenExpirationSeconds: 7200,
      resources,
    });
    expect(settings.secretRef).toBeUndefined();
    expect(settings.appEnv).toEqual([
      { name: "SIDECAR_URL", value: "http://127.0.0.1:5100" },
      { name: "AGENTID_AGENT_ID", value: AGENT },
    ]);
    const dev = ok(
      renderSidecarSettings(
        identity({ clientSecretRef: { name: "s", key: "k" } }),
        blueprint({
          admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] }, developmentSecrets: true }],
        }),
      ),
    );
    expect(dev).toMatchObject({
      credential: "clientSecret",
      secretRef: { name: "s", key: "k" },
      tokenExpirationSeconds: 3600,
    });
  });

  it("renders the same list for the same identity (stable order)", () => {
    const spec = {
      downstreamApis: [
        { name: "b", baseUrl: "https://b/", scopes: ["s"] },
        { name: "a", baseUrl: "https://a/", scopes: ["s"] },
      ],
    };
    const names = ok(renderSidecarSettings(identity(spec), blueprint())).sidecarEnv.map((e) => e.name);
    expect(names.indexOf("DownstreamApis__a__BaseUrl")).toBeLessThan(
      names.indexOf("DownstreamApis__b__BaseUrl"),
    );
    expect(renderSidecarSettings(identity(spec), blueprint())).toEqual(
      renderSidecarSettings(identity(spec), blueprint()),
    );
  });
});
