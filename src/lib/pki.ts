// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const RSA_ALGORITHM = {
  name: "RSASSA-PKCS1-v1_5",
  hash: "SHA-256",
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
  /** Kept to sign leaves without re-importing the PEM. */
  keys: CryptoKeyPair;
  cert: x509.X509Certificate;
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
}

export interface LeafOptions {
  commonName: string;
  /** DNS names for the subjectAltName. */
  dnsNames?: string[];
  /** IP addresses for the subjectAltName. */
  ipAddresses?: string[];
  /** Subject organisations; Kubernetes reads them as groups of a client certificate. */
  organizations?: string[];
  usage: "server" | "client" | "both";
  validDays?: number;
}

function serial(): string {
  // Positive 16-byte serial: clear the top bit.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString("hex");
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  // Back-date a little so that clocks a few seconds apart still accept a freshly made certificate.
  const notBefore = new Date(Date.now() - 5 * 60_000);
  const notAfter = new Date(Date.now() + days * 86_400_000);
  return { notBefore, notAfter };
}

export async function createCertificateAuthority(
  commonName: string,
  validDays = 3650,
): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(RSA_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${escapeDn(commonName)}`,
    ...validity(validDays),
    keys,
    signingAlgorithm: RSA_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey), keys, cert };
}

export async function issueCertificate(
  ca: CertificateAuthority,
  options: LeafOptions,
): Promise<IssuedCertificate> {
  const keys = (await webcrypto.subtle.generateKey(RSA_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const subject = [
    `CN=${escapeDn(options.commonName)}`,
    ...(options.organizations ?? []).map((o) => `O=${escapeDn(o)}`),
  ].join(", ");
  const altNames: x509.JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  const usages: string[] = [];
  if (options.usage !== "client") usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (options.usage !== "server") usages.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
  ];
  if (altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(altNames, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: ca.cert.subject,
    ...validity(options.validDays ?? 365),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: RSA_ALGORITHM,
    extensions,
  });
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/** Re-creates a CA from PEM files written by an earlier run, so that clients that trust it keep working. */
export async function loadCertificateAuthority(
  certPem: string,
  keyPem: string,
): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decodeFirst(keyPem);
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, RSA_ALGORITHM, true, ["sign"]);
  const publicKey = await cert.publicKey.export(RSA_ALGORITHM, ["verify"]);
  return { certPem, keyPem, cert, keys: { privateKey, publicKey } };
}
