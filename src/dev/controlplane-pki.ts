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
  /** The extra client certificates asked for (the cluster's kubelet, controller-manager, scheduler). */
  clients: Record<string, { certPem: string; keyPem: string }>;
}

export const ADMIN_USER = "agentid-admin";

export interface PkiOptions {
  /** Extra subjectAltNames of the serving certificate (the cluster's bridge address, its Service IP). */
  servingDnsNames?: string[];
  servingIpAddresses?: string[];
  /** Client certificates to issue, by name; Kubernetes reads the organisations as groups. */
  clients?: Record<string, { commonName: string; organizations?: string[] }>;
}

export async function createControlPlanePki(options: PkiOptions = {}): Promise<ControlPlanePki> {
  const ca = await createCertificateAuthority("agentid local control plane CA", 30);
  const clientEntries = Object.entries(options.clients ?? {});
  const clientCerts = Promise.all(
    clientEntries.map(([, c]) =>
      issueCertificate(ca, {
        commonName: c.commonName,
        organizations: c.organizations ?? [],
        usage: "client",
        validDays: 30,
      }),
    ),
  );
  const [serving, admin, serviceAccount] = await Promise.all([
    issueCertificate(ca, {
      commonName: "kube-apiserver",
      dnsNames: ["localhost", ...(options.servingDnsNames ?? [])],
      ipAddresses: ["127.0.0.1", ...(options.servingIpAddresses ?? [])],
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
    clients: Object.fromEntries((await clientCerts).map((cert, i) => [clientEntries[i]?.[0] ?? "", cert])),
  };
}

export interface PkiFiles {
  caFile: string;
  servingCertFile: string;
  servingKeyFile: string;
  serviceAccountPublicKeyFile: string;
  serviceAccountSigningKeyFile: string;
  /** The admin's client certificate (kube-apiserver presents it to the kubelet in a cluster). */
  adminCertFile: string;
  adminKeyFile: string;
}

/** Writes what kube-apiserver reads from files; keys are readable by the owner only. */
export async function writePkiFiles(dir: string, pki: ControlPlanePki): Promise<PkiFiles> {
  const files: PkiFiles = {
    caFile: join(dir, "ca.crt"),
    servingCertFile: join(dir, "apiserver.crt"),
    servingKeyFile: join(dir, "apiserver.key"),
    serviceAccountPublicKeyFile: join(dir, "sa.pub"),
    serviceAccountSigningKeyFile: join(dir, "sa.key"),
    adminCertFile: join(dir, "admin.crt"),
    adminKeyFile: join(dir, "admin.key"),
  };
  await Promise.all([
    writeFile(files.caFile, pki.caPem),
    writeFile(files.servingCertFile, pki.servingCertPem),
    writeFile(files.servingKeyFile, pki.servingKeyPem, { mode: 0o600 }),
    writeFile(files.serviceAccountPublicKeyFile, pki.serviceAccountPublicKeyPem),
    writeFile(files.serviceAccountSigningKeyFile, pki.serviceAccountPrivateKeyPem, { mode: 0o600 }),
    writeFile(files.adminCertFile, pki.adminCertPem),
    writeFile(files.adminKeyFile, pki.adminKeyPem, { mode: 0o600 }),
  ]);
  return files;
}
