import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bindConfig } from "../../src/sidecar/config/bind.ts";
import { envToFlat, flattenJson, mergeLayers } from "../../src/sidecar/config/flat.ts";
import { parseListenUrl } from "../../src/sidecar/config/listen.ts";
import { loadConfig } from "../../src/sidecar/config/load.ts";

const TENANT = "415a225c-58fe-4f1a-b44d-e994a7645ffc";
const CLIENT = "635df336-7566-4df6-891b-db8a571aea8e";
const VALID = {
  AzureAd__TenantId: TENANT,
  AzureAd__ClientId: CLIENT,
  AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
  AzureAd__ClientCredentials__0__ClientSecret: "s3cret",
};

function bind(env: Record<string, string>) {
  return bindConfig(mergeLayers(envToFlat(env)), env);
}

describe("configuration binding", () => {
  it("binds Microsoft's env names with Microsoft's defaults", () => {
    const { config, problems } = bind({
      ...VALID,
      "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
      "DownstreamApis__graph-app__RequestAppToken": "True",
      DownstreamApis__me__Scopes: "User.Read  Mail.Read",
      DownstreamApis__me__BaseUrl: "https://graph.microsoft.com/v1.0/",
      DownstreamApis__me__HttpMethod: "post",
      DownstreamApis__me__ExtraQueryParameters__a: "1",
    });
    expect(problems).toEqual([]);
    expect(config?.instance).toBe("https://login.microsoftonline.com/");
    expect(config?.listen).toEqual({ host: "127.0.0.1", port: 5000 });
    expect(config?.allowOverrides).toEqual({
      GetAuthorizationHeader: true,
      GetAuthorizationHeaderUnauthenticated: false,
      CallDownstreamApi: true,
      CallDownstreamApiUnauthenticated: false,
    });
    expect(config?.allowOutboundRedirects).toBe(false);
    expect(config?.audiences).toEqual([CLIENT, `api://${CLIENT}`]);
    expect(config?.apis.get("graph-app")).toMatchObject({
      requestAppToken: true,
      scopes: ["https://graph.microsoft.com/.default"],
    });
    expect(config?.apis.get("me")).toMatchObject({
      scopes: ["User.Read", "Mail.Read"],
      httpMethod: "POST",
      extraQuery: { a: "1" },
    });
  });

  it("matches keys case-insensitively and lets the environment override appsettings.json", () => {
    const file = flattenJson({
      AzureAd: { TenantId: "contoso.onmicrosoft.com", ClientId: CLIENT, ClientSecret: "legacy" },
    });
    const env: Record<string, string> = { AZUREAD__TENANTID: TENANT };
    const { config } = bindConfig(mergeLayers(file, envToFlat(env)), env);
    expect(config?.tenantId).toBe(TENANT);
    expect(config?.credentials).toEqual([{ index: 0, sourceType: "ClientSecret", clientSecret: "legacy" }]);
  });

  it("lists every problem at once", () => {
    const { config, problems } = bind({
      AzureAd__Instance: "http://login.example/",
      AzureAd__TenantId: "consumers",
      AzureAd__ClientId: "abc",
      AzureAd__ClientCredentials__0__SourceType: "StoreWithThumbprint",
      AzureAd__ClientCredentials__1__SourceType: "ClientSecret",
      AzureAd__ClientCredentials__2__SourceType: "Base64Encoded",
      AzureAd__ClientCredentials__2__Base64EncodedValue: "not base64!",
      DownstreamApis__x__Scopes__0: "User.Read",
      DownstreamApis__x__RequestAppToken: "true",
      DownstreamApis__x__BaseUrl: "not a url",
      DownstreamApis__x__ExtraHeaderParameters__Cookie: "a",
      DownstreamApis__x__AcquireTokenOptions__CorrelationId: "nope",
      DownstreamApis__x__ProtocolScheme: "MTLS_POP",
      Sidecar__AllowOutboundRedirects: "sometimes",
      Kestrel__Endpoints__Http__Url: "https://0.0.0.0:5001",
      Logging__LogLevel__Default: "Loud",
    });
    expect(config).toBeUndefined();
    const expected = [
      /Instance .* must be an https URL/,
      /TenantId 'consumers': personal Microsoft accounts/,
      /ClientId 'abc' is not a GUID/,
      /'StoreWithThumbprint': certificate stores exist on Windows only/,
      /ClientCredentials:1:ClientSecret is missing/,
      /Base64EncodedValue is not base64/,
      /RequestAppToken needs a scope ending in '\/.default'/,
      /BaseUrl 'not a url'/,
      /'Cookie' is a reserved header/,
      /CorrelationId 'nope' is not a GUID/,
      /ProtocolScheme 'MTLS_POP'/,
      /AllowOutboundRedirects must be true or false/,
      /https endpoints are not supported/,
      /LogLevel:Default 'Loud'/,
    ];
    for (const e of expected)
      expect(
        problems.some((p) => e.test(p)),
        String(e),
      ).toBe(true);
    expect(problems.length).toBe(expected.length);
  });

  it("takes the token file from AZURE_FEDERATED_TOKEN_FILE and accepts the README's key spelling", () => {
    const fromEnv = bind({
      ...VALID,
      AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
      AZURE_FEDERATED_TOKEN_FILE: "/var/run/secrets/azure/tokens/azure-identity-token",
    });
    expect(fromEnv.config?.credentials[0]).toMatchObject({
      path: "/var/run/secrets/azure/tokens/azure-identity-token",
    });
    const readme = bind({
      ...VALID,
      AzureAd__ClientCredentials__0__SourceType: "signedassertionfilepath",
      AzureAd__ClientCredentials__0__SignedAssertionFilePath: "/t",
    });
    expect(readme.config?.credentials[0]).toMatchObject({
      sourceType: "SignedAssertionFilePath",
      path: "/t",
    });
    expect(readme.warnings.join()).toMatch(/SignedAssertionFileDiskPath/);
    const none = bind({ ...VALID, AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath" });
    expect(none.problems.join()).toMatch(/AZURE_FEDERATED_TOKEN_FILE/);
  });

  it("skips credentials marked Skip; with none left it serves /Validate only, and says so", () => {
    const none = bind({ AzureAd__TenantId: TENANT, AzureAd__ClientId: CLIENT });
    expect(none.problems).toEqual([]);
    expect(none.warnings).toEqual([expect.stringMatching(/ClientCredentials is empty: only \/Validate/)]);
    const skipped = bind({ ...VALID, AzureAd__ClientCredentials__0__Skip: "true" });
    expect(skipped.config?.credentials).toEqual([]);
    expect(skipped.warnings).toEqual([expect.stringMatching(/ClientCredentials is empty/)]);
  });

  it("reads the listen address as ASP.NET Core does", () => {
    expect(bind({ ...VALID, ASPNETCORE_URLS: "http://+:5000" }).config?.listen).toEqual({
      host: "0.0.0.0",
      port: 5000,
    });
    expect(bind({ ...VALID, ASPNETCORE_HTTP_PORTS: "8080" }).config?.listen).toEqual({
      host: "0.0.0.0",
      port: 8080,
    });
    expect(
      bind({
        ...VALID,
        ASPNETCORE_URLS: "http://+:5000",
        Kestrel__Endpoints__Http__Url: "http://localhost:5178",
      }).config?.listen,
    ).toEqual({ host: "127.0.0.1", port: 5178 });
    expect(parseListenUrl("http://[::1]:8080")).toEqual({ host: "::1", port: 8080 });
    expect(parseListenUrl("http://*:80/")).toEqual({ host: "0.0.0.0", port: 80 });
    expect(typeof parseListenUrl("ftp://x")).toBe("string");
    const two = bind({ ...VALID, ASPNETCORE_URLS: "http://127.0.0.1:5000;http://127.0.0.1:6000" });
    expect(two.config?.listen.port).toBe(5000);
    expect(two.warnings.join()).toMatch(/first only/);
  });

  it("reports a broken appsettings.json without echoing its content", () => {
    const dir = mkdtempSync(join(tmpdir(), "sidecar-config-"));
    const path = join(dir, "appsettings.json");
    writeFileSync(path, '{"AzureAd": {"ClientSecret": "do-not-print-me",, }');
    const { problems } = loadConfig(VALID, path);
    expect(problems[0]).toMatch(new RegExp(`^${path}: not valid JSON at line 1, column \\d+$`));
    expect(problems.join()).not.toMatch(/do-not-print-me/);
    expect(loadConfig(VALID, join(dir, "missing.json")).problems[0]).toMatch(/file not found/);
  });
});
