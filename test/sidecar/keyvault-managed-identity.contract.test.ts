import { createServer as createHttpServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeJwt } from "jose";
import { fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testCertificate } from "../support/emulator/testing-certificates.ts";
import { baseEnv, call, type Emu, IDS, startEmu, startTestSidecar, type TestSidecar } from "./harness.ts";

/**
 * The KeyVault credential reaching the vault with the pod's managed identity (an IMDS stand-in over the
 * emulator). A file of its own: msal-node keeps the managed-identity endpoint it found in static state,
 * so this test needs a module graph where no other test found one first.
 */
const API = {
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
  Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
};
let emu: Emu;
const sidecars: TestSidecar[] = [];

beforeAll(async () => {
  emu = await startEmu();
  await emu.admin("POST", `tenants/${IDS.tenant}/resources`, {
    appId: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
    displayName: "Azure Key Vault",
    identifierUris: ["https://vault.azure.net"],
    audience: "https://vault.azure.net",
  });
});
afterAll(async () => {
  for (const s of sidecars) await s.close();
  await emu?.close();
});

describe("KeyVault with the managed identity", () => {
  it("reaches Key Vault with the managed identity (IMDS) when no workload identity is configured", async () => {
    const miAppId = "7b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    await emu.admin("POST", `tenants/${IDS.tenant}/applications`, {
      appId: miAppId,
      displayName: "pod managed identity",
      kind: "managedIdentity",
      clientSecrets: [{ value: "imds-stand-in-secret-2" }],
    });
    const miToken = async (resource: string) => {
      const body = new URLSearchParams({
        grant_type: "client_credentials",
        client_id: miAppId,
        client_secret: "imds-stand-in-secret-2",
        scope: `${resource}/.default`,
      });
      const response = await undiciFetch(`${emu.emulator.url}/${IDS.tenant}/oauth2/v2.0/token`, {
        method: "POST",
        body: body.toString(),
        headers: { "content-type": "application/x-www-form-urlencoded" },
        dispatcher: emu.dispatcher,
      });
      return (await response.json()) as { access_token: string; expires_in: number };
    };
    const miOid = String(decodeJwt((await miToken("https://vault.azure.net")).access_token).oid);
    const cert = await testCertificate("blueprint via managed identity");
    await emu.admin("POST", `tenants/${IDS.tenant}/applications/${IDS.blueprint}/keyCredentials`, {
      key: cert.certPem,
    });
    await emu.admin("PUT", "keyvault/agents-vault/secrets/mi-cert", {
      tenant: IDS.tenant,
      value: `${cert.certPem}\n${cert.keyPem}`,
      contentType: "application/x-pem-file",
      readers: [miOid],
    });
    const asked: string[] = [];
    const imds: Server = createHttpServer((req, res) => {
      const resource = new URL(req.url ?? "/", "http://imds").searchParams.get("resource") ?? "";
      asked.push(resource);
      miToken(resource).then((t) => {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            access_token: t.access_token,
            expires_in: String(t.expires_in),
            expires_on: String(Math.floor(Date.now() / 1000) + t.expires_in),
            resource,
            token_type: "Bearer",
          }),
        );
      });
    });
    await new Promise<void>((r) => imds.listen(0, "127.0.0.1", r));
    process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = `http://127.0.0.1:${(imds.address() as AddressInfo).port}`;
    try {
      const s = await startTestSidecar(emu, {
        ...baseEnv(emu, API),
        AzureAd__ClientCredentials__0__SourceType: "KeyVault",
        AzureAd__ClientCredentials__0__KeyVaultUrl: `${emu.emulator.url}/keyvault/agents-vault/`,
        AzureAd__ClientCredentials__0__KeyVaultCertificateName: "mi-cert",
        AzureAd__ClientCredentials__0__ClientSecret: "",
      });
      sidecars.push(s);
      const r = await call(
        `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
      );
      expect(r.status, r.text).toBe(200);
      expect(asked).toEqual(["https://vault.azure.net"]);
    } finally {
      delete process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST;
      imds.close();
    }
  });
});
