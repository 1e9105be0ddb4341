import { getCACertificates, setDefaultCACertificates } from "node:tls";
import { ClientCertificateCredential } from "@azure/identity";
import { beforeAll, describe, expect, it } from "vitest";
import { claimsOf, useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";
import { type TestCertificate, testCertificate } from "../support/emulator/testing-certificates.ts";

/**
 * @azure/identity's ClientCertificateCredential (PEM with certificate and key, as Azure SDKs read
 * AZURE_CLIENT_CERTIFICATE_PATH) against a certificate registered in the emulator. The emulator's CA is
 * trusted process-wide in this worker.
 */
const h = useHarness();
let cert: TestCertificate;
let stranger: TestCertificate;

beforeAll(async () => {
  [cert, stranger] = await Promise.all([
    testCertificate("identity app"),
    testCertificate("identity stranger"),
  ]);
  setDefaultCACertificates([...getCACertificates("default"), h.emulator.caPem]);
  const r = await callJson(
    h.dispatcher,
    "POST",
    `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications/${IDS.app}/keyCredentials`,
    { key: cert.certPem },
  );
  if (r.status !== 201) throw new Error(`could not register the certificate: ${JSON.stringify(r.json)}`);
});

const options = () => ({ authorityHost: h.emulator.url, disableInstanceDiscovery: true });

describe("@azure/identity ClientCertificateCredential against the emulator", () => {
  it.each([false, true])("gets an app token (sendCertificateChain: %s)", async (sendCertificateChain) => {
    const credential = new ClientCertificateCredential(
      IDS.tenant,
      IDS.app,
      { certificate: `${cert.certPem}\n${cert.keyPem}` },
      { ...options(), sendCertificateChain },
    );
    const token = await credential.getToken("https://graph.microsoft.com/.default");
    // Graph's tokens are v1: appid/appidacr, not azp/azpacr.
    expect(claimsOf(token.token)).toMatchObject({
      appid: IDS.app,
      appidacr: "2",
      roles: ["Application.ReadWrite.All"],
    });
  });

  it("fails with AADSTS700027 for a certificate the app does not have", async () => {
    const credential = new ClientCertificateCredential(
      IDS.tenant,
      IDS.app,
      { certificate: `${stranger.certPem}\n${stranger.keyPem}` },
      options(),
    );
    await expect(credential.getToken("https://graph.microsoft.com/.default")).rejects.toThrow(/AADSTS700027/);
  });
});
