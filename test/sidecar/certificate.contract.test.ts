import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import forge from "node-forge";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type TestCertificate,
  testCertificate,
  testEcCertificate,
} from "../support/emulator/testing-certificates.ts";
import {
  baseEnv,
  call,
  claimsOf,
  clientOf,
  type Emu,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
  tokenOf,
} from "./harness.ts";

/**
 * The `Path` credential source: the blueprint authenticates with a PEM certificate and key from disk
 * (msal-node signs the client assertion), against a certificate registered on the blueprint in the
 * emulator, which verifies it as Entra does. Certificates are generated here; none is committed.
 */
const API = {
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
  Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
};

let emu: Emu;
let registered: TestCertificate;
let unregistered: TestCertificate;
const dir = mkdtempSync(join(tmpdir(), "agentid-sidecar-cert-"));
const sidecars: TestSidecar[] = [];

function writePem(name: string, cert: TestCertificate): string {
  const path = join(dir, name);
  writeFileSync(path, `${cert.certPem}\n${cert.keyPem}\n`, { mode: 0o600 });
  return path;
}

function certificateEnv(path: string): Record<string, string> {
  return {
    ...baseEnv(emu, API),
    AzureAd__ClientCredentials__0__SourceType: "Path",
    AzureAd__ClientCredentials__0__CertificateDiskPath: path,
    AzureAd__ClientCredentials__0__ClientSecret: "",
  };
}

beforeAll(async () => {
  [registered, unregistered] = await Promise.all([
    testCertificate("sidecar blueprint"),
    testCertificate("not on the blueprint"),
  ]);
  emu = await startEmu();
  await emu.admin("POST", `tenants/${IDS.tenant}/applications/${IDS.blueprint}/keyCredentials`, {
    key: registered.certPem,
  });
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Path (certificate from disk)", () => {
  it("gets an app token and an agent token (fmi_path leg) with the blueprint's certificate", async () => {
    const s = await startTestSidecar(emu, certificateEnv(writePem("blueprint.pem", registered)));
    sidecars.push(s);
    await emu.resetCounters();
    const app = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(app.status, app.text).toBe(200);
    // appidacr 2 (Graph's tokens are v1): the blueprint proved itself with a certificate, not a secret.
    expect(claimsOf(app)).toMatchObject({
      appid: IDS.blueprint,
      appidacr: "2",
      aud: "https://graph.microsoft.com",
    });
    const agent = await call(
      `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
    );
    expect(agent.status, agent.text).toBe(200);
    expect(claimsOf(agent)).toMatchObject({
      appid: IDS.agent,
      xms_par_app_azp: IDS.blueprint,
      roles: ["User.Read.All"],
    });
    const counts = (await emu.counters()).byClient;
    expect(counts[IDS.blueprint]).toEqual({ client_credentials: 1, "client_credentials+fmi_path": 1 });
    expect(counts[IDS.agent]).toEqual({ client_credentials: 1 });
  });

  it("answers Microsoft's 401 problem with the AADSTS message for a certificate the blueprint does not have", async () => {
    const s = await startTestSidecar(emu, certificateEnv(writePem("stranger.pem", unregistered)));
    sidecars.push(s);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(r.status, r.text).toBe(401);
    expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(r.json).toMatchObject({ status: 401, title: expect.any(String) });
    expect(String(r.json.detail)).toMatch(/AADSTS700027: .*The key was not found/);
    expect(String(r.json.detail)).toContain(unregistered.sha256);
    expect(r.text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    expect(s.logs.join("")).not.toContain("PRIVATE KEY");
  });

  it("refuses to start with a non-RSA certificate, which Entra's certificate credentials do not take", async () => {
    const ec = await testEcCertificate();
    const path = join(dir, "ec.pem");
    writeFileSync(path, `${ec.certPem}\n${ec.keyPem}\n`, { mode: 0o600 });
    await expect(startTestSidecar(emu, certificateEnv(path))).rejects.toThrow(
      /ClientCredentials:0 \(Path\): .*RSA/,
    );
  });

  it("falls through to the next credential when Entra rejects the certificate", async () => {
    const s = await startTestSidecar(emu, {
      ...certificateEnv(writePem("stranger-then-secret.pem", unregistered)),
      AzureAd__ClientCredentials__1__SourceType: "ClientSecret",
      AzureAd__ClientCredentials__1__ClientSecret: IDS.blueprintSecret,
    });
    sidecars.push(s);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(r.status, r.text).toBe(200);
    expect(decodeJwt(tokenOf(r)).appidacr).toBe("1");
  });

  it("stops working once the certificate is removed from the blueprint", async () => {
    const s = await startTestSidecar(emu, certificateEnv(writePem("removed.pem", registered)));
    sidecars.push(s);
    const url = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.AcquireTokenOptions.ForceRefresh=true`;
    expect((await call(url)).status).toBe(200);
    await emu.admin(
      "DELETE",
      `tenants/${IDS.tenant}/applications/${IDS.blueprint}/keyCredentials/${registered.sha1}`,
    );
    try {
      // A forced refresh is the caller asking for a new token: Entra's refusal, never the cached one
      // (Microsoft's sidecar answers the same 401).
      const forced = await call(url);
      expect(forced.status, forced.text).toBe(401);
      expect(String(forced.json.detail)).toMatch(/AADSTS700027/);
      // Callers that did not force still get the cached, still valid token.
      const plain = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
      expect(plain.status).toBe(200);
      const fresh = await call(
        `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
      );
      expect(fresh.status).toBe(401);
      expect(String(fresh.json.detail)).toMatch(/AADSTS700027/);
    } finally {
      await emu.admin("POST", `tenants/${IDS.tenant}/applications/${IDS.blueprint}/keyCredentials`, {
        key: registered.certPem,
      });
    }
  });
});

/** A PKCS#12 file of the certificate and its key, as Windows or `openssl pkcs12 -export` writes one. */
function pfx(cert: TestCertificate, password: string, algorithm: "aes256" | "3des"): Buffer {
  const key = forge.pki.privateKeyFromPem(cert.keyPem);
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, [forge.pki.certificateFromPem(cert.certPem)], password, {
    algorithm,
  });
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), "binary");
}

function pfxEnv(extra: Record<string, string>): Record<string, string> {
  return { ...baseEnv(emu, API), AzureAd__ClientCredentials__0__ClientSecret: "", ...extra };
}

describe("PFX files, Base64Encoded, certificate stores, and no credential", () => {
  it("gets tokens with a password-protected PFX (AES and the legacy 3DES of Windows exports)", async () => {
    for (const algorithm of ["aes256", "3des"] as const) {
      const path = join(dir, `blueprint-${algorithm}.pfx`);
      writeFileSync(path, pfx(registered, "p@ss word", algorithm), { mode: 0o600 });
      const s = await startTestSidecar(
        emu,
        pfxEnv({
          AzureAd__ClientCredentials__0__SourceType: "Path",
          AzureAd__ClientCredentials__0__CertificateDiskPath: path,
          AzureAd__ClientCredentials__0__CertificatePassword: "p@ss word",
        }),
      );
      sidecars.push(s);
      const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
      expect(clientOf(r), algorithm).toBe(IDS.blueprint);
      // 2: the blueprint proved itself with a certificate (appidacr in v1 tokens, azpacr in v2).
      const claims = claimsOf(r);
      expect(claims.appidacr ?? claims.azpacr).toBe("2");
      expect(s.logs.join("")).not.toContain("p@ss word");
    }
  });

  it("refuses to start with a wrong PFX password, saying so and never echoing it", async () => {
    const path = join(dir, "wrong-password.pfx");
    writeFileSync(path, pfx(registered, "right", "aes256"), { mode: 0o600 });
    const start = startTestSidecar(
      emu,
      pfxEnv({
        AzureAd__ClientCredentials__0__SourceType: "Path",
        AzureAd__ClientCredentials__0__CertificateDiskPath: path,
        AzureAd__ClientCredentials__0__CertificatePassword: "wrong-guess",
      }),
    );
    await expect(start).rejects.toThrow(
      /ClientCredentials:0 \(Path\): .*wrong or missing CertificatePassword/,
    );
    await expect(start).rejects.not.toThrow(/wrong-guess|right/);
  });

  it("Base64Encoded: a PFX (Microsoft's form) or a PEM, base64-encoded in the configuration", async () => {
    for (const value of [
      pfx(registered, "", "aes256").toString("base64"),
      Buffer.from(`${registered.certPem}\n${registered.keyPem}`).toString("base64"),
    ]) {
      const s = await startTestSidecar(
        emu,
        pfxEnv({
          AzureAd__ClientCredentials__0__SourceType: "Base64Encoded",
          AzureAd__ClientCredentials__0__Base64EncodedValue: value,
        }),
      );
      sidecars.push(s);
      const r = await call(
        `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
      );
      expect(clientOf(r)).toBe(IDS.agent);
      expect(claimsOf(r)).toMatchObject({ xms_par_app_azp: IDS.blueprint });
    }
  });

  it("refuses a certificate store source with a start-up error saying stores are Windows-only", async () => {
    await expect(
      startTestSidecar(
        emu,
        pfxEnv({
          AzureAd__ClientCredentials__0__SourceType: "StoreWithThumbprint",
          AzureAd__ClientCredentials__0__CertificateStorePath: "CurrentUser/My",
          AzureAd__ClientCredentials__0__CertificateThumbprint: registered.sha1,
        }),
      ),
    ).rejects.toThrow(
      /'StoreWithThumbprint': certificate stores exist on Windows only.*Path .*Base64Encoded/,
    );
  });

  it("starts without any credential for a /Validate-only deployment; token routes say why they cannot", async () => {
    const env = baseEnv(emu, API);
    delete env.AzureAd__ClientCredentials__0__SourceType;
    delete env.AzureAd__ClientCredentials__0__ClientSecret;
    const s = await startTestSidecar(emu, env);
    sidecars.push(s);
    const user = await emu.userToken();
    const validated = await call(`${s.url}/Validate`, { headers: { authorization: `Bearer ${user}` } });
    expect(validated.status, validated.text).toBe(200);
    const token = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(token.status).toBe(500);
    expect(String(token.json.detail)).toMatch(/No client credential is configured.*\/Validate/);
    expect(s.logs.join("")).toMatch(/AzureAd:ClientCredentials is empty: only \/Validate/);
  });
});
