import { describe, expect, it } from "vitest";
import { type EnvVar, renderSidecarSettings } from "../../src/api/render.ts";
import type { AgentIdentityBlueprintSpec, AgentIdentitySpec } from "../../src/api/types.ts";
import { bindConfig } from "../../src/sidecar/config/bind.ts";
import { envToFlat, mergeLayers } from "../../src/sidecar/config/flat.ts";
import { blueprint, identity } from "../support/api-fixtures.ts";

/**
 * The contract between the two halves: what renderSidecarSettings produces (for the webhook) is a
 * configuration our sidecar binds without a problem, with the same meaning.
 */
const TENANT = "11111111-1111-1111-1111-111111111111";
const BLUEPRINT = "22222222-2222-2222-2222-222222222222";
const EMULATOR = "https://login.example/";

/** What the kubelet would give the sidecar: secretKeyRef values resolved. */
function asProcessEnv(env: EnvVar[], secret = "resolved-secret"): Record<string, string> {
  return Object.fromEntries(env.map((e) => [e.name, "value" in e ? e.value : secret]));
}

function bind(spec: Partial<AgentIdentitySpec>, bp: Partial<AgentIdentityBlueprintSpec> = {}) {
  const rendered = renderSidecarSettings(
    identity(spec),
    blueprint({ tenantId: TENANT, clientId: BLUEPRINT, ...bp }),
    {
      allowedAuthorityHosts: [EMULATOR],
    },
  );
  if (!rendered.ok) throw new Error(rendered.message);
  const env = asProcessEnv(rendered.settings.sidecarEnv);
  return bindConfig(mergeLayers(envToFlat(env)), env);
}

describe("renderSidecarSettings → our sidecar's configuration", () => {
  it("binds a workload-identity agent with downstream APIs, overrides, port and log level", () => {
    const result = bind(
      {
        downstreamApis: [
          {
            name: "graph-app",
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["https://graph.microsoft.com/.default"],
            requestAppToken: true,
          },
          {
            name: "me",
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["User.Read", "Mail.Read"],
            relativePath: "me",
            httpMethod: "POST",
            extraHeaders: { "x-trace": "1" },
            extraQueryParameters: { "api-version": "2" },
          },
        ],
        sidecar: {
          port: 5100,
          logLevel: "Warning",
          allowOverrides: { getAuthorizationHeaderUnauthenticated: true },
        },
      },
      { cloud: "Custom", authorityHost: "https://login.example" },
    );
    expect(result.problems).toEqual([]);
    const config = result.config;
    expect(config).toMatchObject({
      instance: "https://login.example/",
      tenantId: TENANT,
      clientId: BLUEPRINT,
      listen: { host: "127.0.0.1", port: 5100 },
      logLevel: "warn",
    });
    expect(config?.credentials).toEqual([
      {
        index: 0,
        sourceType: "SignedAssertionFilePath",
        path: "/var/run/secrets/agentid/token/azure-identity-token",
      },
    ]);
    expect(config?.allowOverrides.GetAuthorizationHeaderUnauthenticated).toBe(true);
    expect(config?.apis.get("graph-app")).toMatchObject({
      requestAppToken: true,
      scopes: ["https://graph.microsoft.com/.default"],
    });
    expect(config?.apis.get("me")).toMatchObject({
      relativePath: "me",
      scopes: ["User.Read", "Mail.Read"],
      extraHeaders: { "x-trace": "1" },
      extraQuery: { "api-version": "2" },
    });
    expect(config?.apis.get("me")?.httpMethod.toUpperCase()).toBe("POST");
  });

  it("binds a development client secret", () => {
    const result = bind(
      { clientSecretRef: { name: "s", key: "k" } },
      {
        admits: [
          {
            namespaces: ["ns"],
            agents: { allowed: ["33333333-3333-3333-3333-333333333333"] },
            developmentSecrets: true,
          },
        ],
      },
    );
    expect(result.problems).toEqual([]);
    expect(result.config?.credentials).toEqual([
      { index: 0, sourceType: "ClientSecret", clientSecret: "resolved-secret" },
    ]);
  });

  it("binds a user-assigned managed identity", () => {
    const mi = "33333333-3333-3333-3333-333333333333";
    const result = bind({}, { credential: { managedIdentity: { clientId: mi } } });
    expect(result.problems).toEqual([]);
    expect(result.config?.credentials[0]).toMatchObject({
      sourceType: "SignedAssertionFromManagedIdentity",
      managedIdentityClientId: mi,
    });
  });
});
