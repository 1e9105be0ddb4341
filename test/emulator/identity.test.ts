import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getCACertificates, setDefaultCACertificates } from "node:tls";
import {
  ClientAssertionCredential,
  ClientSecretCredential,
  WorkloadIdentityCredential,
} from "@azure/identity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOKEN_EXCHANGE_APP_ID } from "../../src/emulator/store.ts";
import { claimsOf, type Harness } from "../support/emulator/test-harness.ts";
import { IDS } from "../support/emulator/testing.ts";
import { type OidcIssuer, startHarnessTrusting, startOidcIssuer } from "./oidc-issuer.ts";

/**
 * Interoperability with @azure/identity's credentials, pointed at the emulator as Azure Workload Identity
 * points them at Entra (AZURE_AUTHORITY_HOST). The emulator's CA is trusted process-wide in this worker.
 */
let h: Harness;
let issuer: OidcIssuer;

beforeAll(async () => {
  issuer = await startOidcIssuer();
  h = await startHarnessTrusting(issuer);
  setDefaultCACertificates([...getCACertificates("default"), h.emulator.caPem]);
});
afterAll(async () => {
  await h?.close();
  await issuer?.close();
});

const options = () => ({ authorityHost: h.emulator.url, disableInstanceDiscovery: true });

describe("@azure/identity against the emulator", () => {
  it("ClientSecretCredential gets an app token", async () => {
    const credential = new ClientSecretCredential(IDS.tenant, IDS.app, IDS.appSecret, options());
    const token = await credential.getToken("https://graph.microsoft.com/.default");
    // Graph's tokens are v1: appid, not azp.
    expect(claimsOf(token.token)).toMatchObject({ appid: IDS.app, roles: ["Application.ReadWrite.All"] });
    expect(token.expiresOnTimestamp).toBeGreaterThan(Date.now());
  });

  it("ClientAssertionCredential authenticates an agent identity with T1", async () => {
    const credential = new ClientAssertionCredential(IDS.tenant, IDS.agent, () => h.t1(), options());
    const token = await credential.getToken("api://contoso-weather/.default");
    expect(claimsOf(token.token)).toMatchObject({
      azp: IDS.agent,
      roles: ["Forecast.Read"],
      xms_par_app_azp: IDS.blueprint,
    });
  });

  it("WorkloadIdentityCredential reads the projected token file and AZURE_AUTHORITY_HOST", async () => {
    const dir = await mkdtemp(join(tmpdir(), "agentid-wi-"));
    const tokenFile = join(dir, "azure-identity-token");
    await writeFile(tokenFile, await issuer.sign());
    const saved = { ...process.env };
    Object.assign(process.env, {
      AZURE_AUTHORITY_HOST: h.emulator.url,
      AZURE_TENANT_ID: IDS.tenant,
      AZURE_CLIENT_ID: IDS.blueprint,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
    });
    try {
      const credential = new WorkloadIdentityCredential({ disableInstanceDiscovery: true });
      const token = await credential.getToken("api://AzureADTokenExchange/.default");
      expect(claimsOf(token.token)).toMatchObject({
        azp: IDS.blueprint,
        aud: TOKEN_EXCHANGE_APP_ID,
        azpacr: "2",
      });
    } finally {
      for (const key of [
        "AZURE_AUTHORITY_HOST",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
      ]) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });

  it("WorkloadIdentityCredential fails with the emulator's AADSTS code for an untrusted subject", async () => {
    const dir = await mkdtemp(join(tmpdir(), "agentid-wi-"));
    const tokenFile = join(dir, "azure-identity-token");
    await writeFile(tokenFile, await issuer.sign({ sub: "system:serviceaccount:agents:someone-else" }));
    const credential = new WorkloadIdentityCredential({
      tenantId: IDS.tenant,
      clientId: IDS.blueprint,
      tokenFilePath: tokenFile,
      authorityHost: h.emulator.url,
      disableInstanceDiscovery: true,
    });
    await expect(credential.getToken("api://AzureADTokenExchange/.default")).rejects.toThrow(/AADSTS700213/);
  });
});
