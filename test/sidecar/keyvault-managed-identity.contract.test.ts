import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testCertificate } from "../support/emulator/testing-certificates.ts";
import { baseEnv, call, type Emu, IDS, startEmu, startTestSidecar, type TestSidecar } from "./harness.ts";
import { createManagedIdentity } from "./support/imds.ts";

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
    const mi = await createManagedIdentity(
      emu,
      "7b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
      "pod managed identity",
      "imds-stand-in-secret-2",
    );
    const miOid = String(decodeJwt((await mi.token("https://vault.azure.net")).access_token).oid);
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
    const imds = await mi.serveImds();
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
      expect(imds.resources).toEqual(["https://vault.azure.net"]);
    } finally {
      imds.close();
    }
  });
});
