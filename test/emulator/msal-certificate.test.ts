import { getCACertificates, setDefaultCACertificates } from "node:tls";
import { ConfidentialClientApplication, type NodeAuthOptions } from "@azure/msal-node";
import { beforeAll, describe, expect, it } from "vitest";
import { claimsOf, EXCHANGE_SCOPE, useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";
import { type TestCertificate, testCertificate } from "../support/emulator/testing-certificates.ts";

/**
 * @azure/msal-node's certificate credential (`clientCertificate`) against the emulator: msal-node builds
 * and signs the client assertion itself (PS256 + x5t#S256, or RS256 + x5t for a SHA-1 thumbprint), with
 * the token endpoint from the emulator's discovery document as its audience. This file runs in its own
 * worker, so trusting the emulator's CA process-wide is contained.
 */
const h = useHarness();
let appCert: TestCertificate;
let blueprintCert: TestCertificate;
let stranger: TestCertificate;
let authority: string;
let host: string;

const GRAPH = ["https://graph.microsoft.com/.default"];

beforeAll(async () => {
  [appCert, blueprintCert, stranger] = await Promise.all([
    testCertificate("msal app"),
    testCertificate("msal blueprint"),
    testCertificate("msal stranger"),
  ]);
  setDefaultCACertificates([...getCACertificates("default"), h.emulator.caPem]);
  authority = `${h.emulator.url}/${IDS.tenant}`;
  host = new URL(h.emulator.url).host;
  for (const [app, cert] of [
    [IDS.app, appCert],
    [IDS.blueprint, blueprintCert],
  ] as const) {
    const r = await callJson(
      h.dispatcher,
      "POST",
      `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications/${app}/keyCredentials`,
      { key: cert.certPem },
    );
    if (r.status !== 201) throw new Error(`could not register the certificate: ${JSON.stringify(r.json)}`);
  }
});

function cca(clientId: string, clientCertificate: NodeAuthOptions["clientCertificate"]) {
  return new ConfidentialClientApplication({
    auth: { clientId, authority, knownAuthorities: [host], clientCertificate },
  });
}

async function certificateLogins(): Promise<string[]> {
  return h.logLines.filter((l) => l.includes('"auth":"client_certificate"'));
}

describe("@azure/msal-node clientCertificate against the emulator", () => {
  it("gets an app token with a SHA-256 thumbprint (PS256)", async () => {
    const before = (await certificateLogins()).length;
    const app = cca(IDS.app, { thumbprintSha256: appCert.sha256, privateKey: appCert.keyPem });
    const result = await app.acquireTokenByClientCredential({ scopes: GRAPH });
    // Graph's tokens are v1: appid/appidacr, not azp/azpacr.
    expect(claimsOf(result?.accessToken)).toMatchObject({
      appid: IDS.app,
      appidacr: "2",
      roles: ["Application.ReadWrite.All"],
    });
    expect((await certificateLogins()).length).toBe(before + 1);
  });

  it("gets an app token when it also sends the certificate chain (x5c)", async () => {
    const app = cca(IDS.app, {
      thumbprintSha256: appCert.sha256,
      privateKey: appCert.keyPem,
      x5c: appCert.certPem,
    });
    const result = await app.acquireTokenByClientCredential({ scopes: GRAPH });
    expect(claimsOf(result?.accessToken).appid).toBe(IDS.app);
  });

  it("gets an app token with a SHA-1 thumbprint (RS256 + x5t)", async () => {
    const app = cca(IDS.app, { thumbprint: appCert.sha1, privateKey: appCert.keyPem });
    const result = await app.acquireTokenByClientCredential({ scopes: GRAPH });
    expect(claimsOf(result?.accessToken).appid).toBe(IDS.app);
  });

  it("lets a blueprint get T1 with its certificate (fmiPath) for its agent", async () => {
    const blueprint = cca(IDS.blueprint, {
      thumbprintSha256: blueprintCert.sha256,
      privateKey: blueprintCert.keyPem,
    });
    const agent = new ConfidentialClientApplication({
      auth: {
        clientId: IDS.agent,
        authority,
        knownAuthorities: [host],
        clientAssertion: async () => {
          const t1 = await blueprint.acquireTokenByClientCredential({
            scopes: [EXCHANGE_SCOPE],
            fmiPath: IDS.agent,
          });
          if (!t1) throw new Error("no T1");
          return t1.accessToken;
        },
      },
    });
    const result = await agent.acquireTokenByClientCredential({ scopes: GRAPH });
    expect(claimsOf(result?.accessToken)).toMatchObject({ appid: IDS.agent, xms_par_app_azp: IDS.blueprint });
  });

  it("fails with AADSTS700027 for a certificate the app does not have", async () => {
    const app = cca(IDS.app, { thumbprintSha256: stranger.sha256, privateKey: stranger.keyPem });
    await expect(app.acquireTokenByClientCredential({ scopes: GRAPH })).rejects.toMatchObject({
      errorCode: "invalid_client",
      errorMessage: expect.stringMatching(/AADSTS700027: .*The key was not found/),
    });
  });
});
