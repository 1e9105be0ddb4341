import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from "jose";
import forge from "node-forge";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { testCertificate } from "../support/emulator/testing-certificates.ts";
import {
  baseEnv,
  call,
  claimsOf,
  type Emu,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
  tokenOf,
} from "./harness.ts";
import { createManagedIdentity } from "./support/imds.ts";

const EXCHANGE = "api://AzureADTokenExchange";
const SUBJECT = "system:serviceaccount:agents:research";
const API = {
  "DownstreamApis__graph-app__Scopes__0": "https://graph.microsoft.com/.default",
  "DownstreamApis__graph-app__RequestAppToken": "true",
  Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated: "true",
};

let emu: Emu;
let issuerUrl: string;
let issuerServer: Server;
let signSaToken: () => Promise<string>;
const dir = mkdtempSync(join(tmpdir(), "agentid-sidecar-cred-"));
const sidecars: TestSidecar[] = [];

/** A Kubernetes-style service-account issuer over HTTPS: discovery document, JWKS, and token minting. */
beforeAll(async () => {
  const ca = await createCertificateAuthority("test issuer CA");
  const serving = await issueCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const { publicKey, privateKey } = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "sa-key-1", alg: "RS256", use: "sig" };
  issuerServer = createHttpsServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration") {
      res.end(
        JSON.stringify({
          issuer: issuerUrl,
          jwks_uri: `${issuerUrl}/openid/v1/jwks`,
          id_token_signing_alg_values_supported: ["RS256"],
        }),
      );
    } else if (req.url === "/openid/v1/jwks") res.end(JSON.stringify({ keys: [jwk] }));
    else {
      res.statusCode = 404;
      res.end("{}");
    }
  });
  await new Promise<void>((r) => issuerServer.listen(0, "127.0.0.1", r));
  issuerUrl = `https://127.0.0.1:${(issuerServer.address() as AddressInfo).port}`;
  signSaToken = () =>
    new SignJWT({})
      .setProtectedHeader({ alg: "RS256", kid: "sa-key-1" })
      .setIssuer(issuerUrl)
      .setSubject(SUBJECT)
      .setAudience(EXCHANGE)
      .setIssuedAt()
      .setExpirationTime("1h")
      .setJti(crypto.randomUUID())
      .sign(privateKey);
  emu = await startEmu({ trustedCaPems: [ca.certPem] });
  await emu.admin(
    "POST",
    `tenants/${IDS.tenant}/applications/${IDS.blueprint}/federatedIdentityCredentials`,
    {
      name: "k8s",
      issuer: issuerUrl,
      subject: SUBJECT,
      audiences: [EXCHANGE],
    },
  );
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  issuerServer?.close();
  await emu?.close();
});

function writeAtomically(path: string, content: string): void {
  // As the kubelet does: a new file swapped in, never an in-place write.
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

describe("SignedAssertionFilePath (Kubernetes projected token)", () => {
  it("authenticates the blueprint with the token file named by AZURE_FEDERATED_TOKEN_FILE", async () => {
    const file = join(dir, "azure-identity-token");
    writeAtomically(file, await signSaToken());
    const s = await startTestSidecar(emu, {
      ...baseEnv(emu, API),
      AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
      AzureAd__ClientCredentials__0__ClientSecret: "",
      AZURE_FEDERATED_TOKEN_FILE: file,
    });
    sidecars.push(s);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`);
    expect(claimsOf(r)).toMatchObject({ appid: IDS.agent, xms_par_app_azp: IDS.blueprint });
  });

  it("re-reads the file when the kubelet rotates it", async () => {
    const file = join(dir, "rotating-token");
    writeAtomically(file, await signSaToken());
    const s = await startTestSidecar(emu, {
      ...baseEnv(emu, API),
      AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
      AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: file,
    });
    sidecars.push(s);
    // From now on Entra refuses an assertion it has seen before: a new token works only if re-read.
    await emu.admin("POST", "settings", { rejectReplayedAssertions: true });
    try {
      const url = `${s.url}/AuthorizationHeaderUnauthenticated/graph-app`;
      const first = tokenOf(await call(url));
      const forced = `${url}?optionsOverride.AcquireTokenOptions.ForceRefresh=true`;
      // Same file content: the replayed assertion is refused, and a forced refresh gets that refusal.
      const replayed = await call(forced);
      expect(replayed.status, replayed.text).toBe(401);
      expect(tokenOf(await call(url))).toBe(first);
      writeAtomically(file, await signSaToken());
      const renewed = await call(forced);
      expect(renewed.status).toBe(200);
      expect(tokenOf(renewed)).not.toBe(first);
    } finally {
      await emu.admin("POST", "settings", { rejectReplayedAssertions: false });
    }
  });

  it("refuses to start when the token file is missing, naming it", async () => {
    await expect(
      startTestSidecar(emu, {
        ...baseEnv(emu, API),
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
        AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: join(dir, "missing"),
      }),
    ).rejects.toThrow(/ClientCredentials:0 \(SignedAssertionFilePath\): file not found: .*missing/);
  });

  it("falls through to the next credential when the first cannot load", async () => {
    const s = await startTestSidecar(emu, {
      ...baseEnv(emu, API),
      AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFilePath",
      AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath: join(dir, "missing"),
      AzureAd__ClientCredentials__1__SourceType: "ClientSecret",
      AzureAd__ClientCredentials__1__ClientSecret: IDS.blueprintSecret,
    });
    sidecars.push(s);
    expect((await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`)).status).toBe(200);
  });

  it("falls through to the next credential when Entra rejects the first", async () => {
    const s = await startTestSidecar(emu, {
      ...baseEnv(emu, API),
      AzureAd__ClientCredentials__0__ClientSecret: "wrong-secret",
      AzureAd__ClientCredentials__1__SourceType: "ClientSecret",
      AzureAd__ClientCredentials__1__ClientSecret: IDS.blueprintSecret,
    });
    sidecars.push(s);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app`);
    expect(r.status, r.text).toBe(200);
    expect(s.logs.join("")).toMatch(/trying the next configured one/);
  });
});

describe("SignedAssertionFromManagedIdentity (IMDS)", () => {
  it("uses a managed-identity token for api://AzureADTokenExchange as the blueprint's assertion", async () => {
    // The managed identity is an app of kind managedIdentity; its app token is what IMDS would hand out.
    const mi = await createManagedIdentity(
      emu,
      "5a0c3b7e-1d2f-4e6a-9b8c-7d6e5f4a3b2c",
      "node managed identity",
      "imds-stand-in-secret",
    );
    const miSubject = String(decodeJwt((await mi.token(EXCHANGE)).access_token).sub);
    await emu.admin(
      "POST",
      `tenants/${IDS.tenant}/applications/${IDS.blueprint}/federatedIdentityCredentials`,
      {
        name: "managed-identity",
        issuer: `${emu.emulator.url}/${IDS.tenant}/v2.0`,
        subject: miSubject,
        audiences: [EXCHANGE],
      },
    );
    const imds = await mi.serveImds();
    try {
      const s = await startTestSidecar(emu, {
        ...baseEnv(emu, API),
        AzureAd__ClientCredentials__0__SourceType: "SignedAssertionFromManagedIdentity",
      });
      sidecars.push(s);
      const r = await call(
        `${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`,
      );
      expect(claimsOf(r)).toMatchObject({ appid: IDS.agent, xms_par_app_azp: IDS.blueprint });
      expect(imds.requests.length).toBe(1);
      expect(imds.requests[0]).toMatch(
        /^\/metadata\/identity\/oauth2\/token\/?\?.*resource=api%3A%2F%2FAzureADTokenExchange.* metadata=true$/,
      );
    } finally {
      imds.close();
    }
  });
});

describe("KeyVault (a certificate read from the emulator's Key Vault with the pod's workload identity)", () => {
  const VAULT_APP = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093";
  const vaultUrl = () => `${emu.emulator.url}/keyvault/agents-vault/`;

  it("reads the blueprint's certificate from Key Vault and authenticates with it; names Key Vault's refusals", async () => {
    await emu.admin("POST", `tenants/${IDS.tenant}/resources`, {
      appId: VAULT_APP,
      displayName: "Azure Key Vault",
      identifierUris: ["https://vault.azure.net"],
      audience: "https://vault.azure.net",
    });
    const cert = await testCertificate("blueprint in key vault");
    await emu.admin("POST", `tenants/${IDS.tenant}/applications/${IDS.blueprint}/keyCredentials`, {
      key: cert.certPem,
    });
    const key = forge.pki.privateKeyFromPem(cert.keyPem);
    const pfx = forge.asn1
      .toDer(
        forge.pkcs12.toPkcs12Asn1(key, [forge.pki.certificateFromPem(cert.certPem)], null, {
          algorithm: "aes256",
        }),
      )
      .getBytes();
    // The reader is the blueprint's service principal: the workload identity below is the blueprint's.
    const probe = await startTestSidecar(emu, baseEnv(emu, API));
    sidecars.push(probe);
    const blueprintOid = String(
      claimsOf(await call(`${probe.url}/AuthorizationHeaderUnauthenticated/graph-app`)).oid,
    );
    const put = (name: string, readers: string[]) =>
      emu.admin("PUT", `keyvault/agents-vault/secrets/${name}`, {
        tenant: IDS.tenant,
        value: Buffer.from(pfx, "binary").toString("base64"),
        contentType: "application/x-pkcs12",
        readers,
      });
    await put("blueprint-cert", [blueprintOid]);
    await put("not-for-you", ["00000000-0000-0000-0000-000000000001"]);

    const file = join(dir, "kv-workload-token");
    writeAtomically(file, await signSaToken());
    const env = (name: string) => ({
      ...baseEnv(emu, API),
      AzureAd__ClientCredentials__0__SourceType: "KeyVault",
      AzureAd__ClientCredentials__0__KeyVaultUrl: vaultUrl(),
      AzureAd__ClientCredentials__0__KeyVaultCertificateName: name,
      AzureAd__ClientCredentials__0__ClientSecret: "",
      AZURE_FEDERATED_TOKEN_FILE: file,
      AZURE_CLIENT_ID: IDS.blueprint,
      AZURE_TENANT_ID: IDS.tenant,
    });
    const s = await startTestSidecar(emu, env("blueprint-cert"));
    sidecars.push(s);
    const r = await call(`${s.url}/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity=${IDS.agent}`);
    expect(r.status, r.text).toBe(200);
    const claims = claimsOf(r);
    expect(claims.xms_par_app_azp).toBe(IDS.blueprint);
    expect(s.logs.join("")).not.toContain("PRIVATE KEY");

    await expect(startTestSidecar(emu, env("not-for-you"))).rejects.toThrow(
      /ClientCredentials:0 \(KeyVault\): Key Vault 127\.0\.0\.1:\d+ answered 403 Forbidden for 'not-for-you'/,
    );
    await expect(startTestSidecar(emu, env("missing"))).rejects.toThrow(
      /answered 404 SecretNotFound for 'missing'/,
    );
  });
});
