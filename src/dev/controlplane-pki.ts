import { generateKeyPair } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createCertificateAuthority, issueCertificate } from "../lib/pki.ts";

const generateKeyPairAsync = promisify(generateKeyPair);

/** The throw-away PKI of one control plane; the CA key never leaves memory. */
export interface ControlPlanePki {
  caPem: string;
  servingCertPem: string;
  servingKeyPem: string;
  /** Client certificate in group system:masters (cluster admin). */
  adminCertPem: string;
  adminKeyPem: string;
  /** Key pair that signs service-account tokens; RSA, so tokens are RS256. */
  serviceAccountPrivateKeyPem: string;
  serviceAccountPublicKeyPem: string;
}

export const ADMIN_USER = "agentid-admin";

export async function createControlPlanePki(): Promise<ControlPlanePki> {
  const ca = await createCertificateAuthority("agentid local control plane CA", 30);
  const [serving, admin, serviceAccount] = await Promise.all([
    issueCertificate(ca, {
      commonName: "kube-apiserver",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      usage: "server",
      validDays: 30,
    }),
    issueCertificate(ca, {
      commonName: ADMIN_USER,
      organizations: ["system:masters"],
      usage: "client",
      validDays: 30,
    }),
    generateKeyPairAsync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    }),
  ]);
  return {
    caPem: ca.certPem,
    servingCertPem: serving.certPem,
    servingKeyPem: serving.keyPem,
    adminCertPem: admin.certPem,
    adminKeyPem: admin.keyPem,
    serviceAccountPrivateKeyPem: serviceAccount.privateKey,
    serviceAccountPublicKeyPem: serviceAccount.publicKey,
  };
}

export interface PkiFiles {
  caFile: string;
  servingCertFile: string;
  servingKeyFile: string;
  serviceAccountPublicKeyFile: string;
  serviceAccountSigningKeyFile: string;
}

/** Writes what kube-apiserver reads from files; keys are readable by the owner only. */
export async function writePkiFiles(dir: string, pki: ControlPlanePki): Promise<PkiFiles> {
  const files: PkiFiles = {
    caFile: join(dir, "ca.crt"),
    servingCertFile: join(dir, "apiserver.crt"),
    servingKeyFile: join(dir, "apiserver.key"),
    serviceAccountPublicKeyFile: join(dir, "sa.pub"),
    serviceAccountSigningKeyFile: join(dir, "sa.key"),
  };
  await Promise.all([
    writeFile(files.caFile, pki.caPem),
    writeFile(files.servingCertFile, pki.servingCertPem),
    writeFile(files.servingKeyFile, pki.servingKeyPem, { mode: 0o600 }),
    writeFile(files.serviceAccountPublicKeyFile, pki.serviceAccountPublicKeyPem),
    writeFile(files.serviceAccountSigningKeyFile, pki.serviceAccountPrivateKeyPem, { mode: 0o600 }),
  ]);
  return files;
}
