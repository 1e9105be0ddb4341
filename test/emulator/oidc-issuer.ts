import type { webcrypto } from "node:crypto";
import type { AddressInfo } from "node:net";
import Fastify from "fastify";
import { exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { type Harness, startHarness } from "../support/emulator/test-harness.ts";
import { IDS, testDirectory } from "../support/emulator/testing.ts";

type CryptoKey = webcrypto.CryptoKey;

export const KUBE_SUBJECT = "system:serviceaccount:agents:research-agent";
export const EXCHANGE_AUDIENCE = "api://AzureADTokenExchange";

export interface OidcIssuer {
  url: string;
  /** The CA of the issuer's HTTPS certificate (its own, as a local kube-apiserver's). */
  caPem: string;
  publicPem: string;
  signingKey: CryptoKey;
  /** A service-account-like token; claims override the defaults (issuer, subject, audience, 1 h validity). */
  sign(claims?: JWTPayload, key?: CryptoKey, kid?: string): Promise<string>;
  close(): Promise<void>;
}

/** A real OIDC issuer over HTTPS serving discovery and a JWKS, like a Kubernetes API server. */
export async function startOidcIssuer(): Promise<OidcIssuer> {
  const ca = await createCertificateAuthority("test OIDC issuer CA");
  const leaf = await issueCertificate(ca, {
    commonName: "issuer",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const keys = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: "issuer-key-1", use: "sig", alg: "RS256" };
  const app = Fastify({ https: { key: leaf.keyPem, cert: leaf.certPem } });
  let url = "";
  app.get("/.well-known/openid-configuration", async () => ({
    issuer: url,
    jwks_uri: `${url}/openid/v1/jwks`,
  }));
  app.get("/openid/v1/jwks", async () => ({ keys: [jwk] }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  url = `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    url,
    caPem: ca.certPem,
    publicPem: await exportSPKI(keys.publicKey),
    signingKey: keys.privateKey,
    async sign(claims: JWTPayload = {}, key: CryptoKey = keys.privateKey, kid = "issuer-key-1") {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ jti: crypto.randomUUID(), ...claims })
        .setProtectedHeader({ alg: "RS256", kid })
        .setIssuer(String(claims.iss ?? url))
        .setSubject(String(claims.sub ?? KUBE_SUBJECT))
        .setAudience(claims.aud ?? EXCHANGE_AUDIENCE)
        .setIssuedAt(now)
        .setNotBefore(Number(claims.nbf ?? now))
        .setExpirationTime(Number(claims.exp ?? now + 3600))
        .sign(key);
    },
    close: () => app.close(),
  };
}

/**
 * An emulator whose sample blueprint trusts `issuer` through one federated credential (subject
 * KUBE_SUBJECT), and which trusts the issuer's CA: the set-up of every workload-identity interop test.
 */
export async function startHarnessTrusting(issuer: OidcIssuer): Promise<Harness> {
  const directory = testDirectory();
  const blueprint = directory.tenants[0]?.applications?.find((a) => a.appId === IDS.blueprint);
  if (!blueprint) throw new Error("the test directory has no blueprint");
  blueprint.federatedIdentityCredentials = [
    { name: "kube-sa", issuer: issuer.url, subject: KUBE_SUBJECT, audiences: [EXCHANGE_AUDIENCE] },
  ];
  return startHarness({ directory, trustedCaPems: [issuer.caPem] });
}
