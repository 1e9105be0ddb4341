// @peculiar/x509 resolves its providers through tsyringe, which needs the Reflect metadata API first.
import "reflect-metadata";
import {
  createHash,
  createPrivateKey,
  type KeyObject,
  randomUUID,
  webcrypto,
  X509Certificate,
} from "node:crypto";
import * as x509 from "@peculiar/x509";
import { SignJWT } from "jose";
// pki.ts also installs @peculiar/x509's crypto provider, which testEcCertificate relies on.
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
} from "../../../src/lib/pki.ts";

/**
 * Certificates for tests of certificate credentials: made at run time, so no private key is ever
 * committed. Assertions are signed with jose, as an app that builds its own private_key_jwt would.
 */
export interface TestCertificate {
  certPem: string;
  keyPem: string;
  privateKey: KeyObject;
  /** SHA-1 / SHA-256 thumbprints, upper-case hex (what Entra's messages print). */
  sha1: string;
  sha256: string;
  /** The same as base64url, for the `x5t` / `x5t#S256` header. */
  x5t: string;
  x5tS256: string;
}

let ca: Promise<CertificateAuthority> | undefined;

export async function testCertificate(commonName = "test app"): Promise<TestCertificate> {
  ca ??= createCertificateAuthority("agentid test certificates");
  const leaf = await issueCertificate(await ca, { commonName, usage: "client" });
  const raw = new X509Certificate(leaf.certPem).raw;
  const sha1 = createHash("sha1").update(raw).digest();
  const sha256 = createHash("sha256").update(raw).digest();
  return {
    certPem: leaf.certPem,
    keyPem: leaf.keyPem,
    privateKey: createPrivateKey(leaf.keyPem),
    sha1: sha1.toString("hex").toUpperCase(),
    sha256: sha256.toString("hex").toUpperCase(),
    x5t: sha1.toString("base64url"),
    x5tS256: sha256.toString("base64url"),
  };
}

export interface AssertionOptions {
  clientId: string;
  audience: string;
  alg?: "RS256" | "PS256" | "RS384";
  /** Header parameters; default `x5t#S256` for PS256 and `x5t` otherwise, as msal-node sends them. */
  header?: Record<string, unknown>;
  issuer?: string;
  subject?: string;
  jti?: string | null;
  /** Seconds from now. */
  expiresIn?: number;
  /** Sign with this key instead of the certificate's. */
  signingKey?: KeyObject;
}

/** A client assertion (private_key_jwt) for the certificate, with the claims Entra documents. */
export function signAssertion(cert: TestCertificate, o: AssertionOptions): Promise<string> {
  const alg = o.alg ?? "PS256";
  const thumbprint = alg === "PS256" ? { "x5t#S256": cert.x5tS256 } : { x5t: cert.x5t };
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(o.jti === null ? {} : { jti: o.jti ?? randomUUID() })
    .setProtectedHeader({ alg, typ: "JWT", ...(o.header ?? thumbprint) })
    .setIssuer(o.issuer ?? o.clientId)
    .setSubject(o.subject ?? o.clientId)
    .setAudience(o.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (o.expiresIn ?? 600));
  return jwt.sign(o.signingKey ?? cert.privateKey);
}

/** A self-signed ECDSA P-256 certificate and key (PEM), for the "RSA only" checks. */
export async function testEcCertificate(): Promise<{ certPem: string; keyPem: string }> {
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=ec test",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: algorithm,
  });
  const der = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem"), keyPem: x509.PemConverter.encode(der, "PRIVATE KEY") };
}
