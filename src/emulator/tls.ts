import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from "../lib/pki.ts";

export interface ServingMaterial {
  caPem: string;
  caPath: string;
  certPem: string;
  keyPem: string;
}

/**
 * The emulator's CA and HTTPS serving certificate, made on first start in the state directory and reused
 * later, so that a client told once to trust `ca.pem` keeps trusting the emulator across restarts. The
 * serving certificate is re-issued (by the same CA) when the host names it must cover change.
 */
export async function ensureServingMaterial(stateDir: string, hosts: string[]): Promise<ServingMaterial> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const caPath = join(stateDir, "ca.pem");
  const caKeyPath = join(stateDir, "ca-key.pem");
  const certPath = join(stateDir, "server.pem");
  const keyPath = join(stateDir, "server-key.pem");
  const hostsPath = join(stateDir, "server-hosts.json");
  const names = [...new Set(["localhost", "127.0.0.1", "::1", ...hosts])].sort();

  let caPem = await readFile(caPath, "utf8").catch(() => undefined);
  const caKeyPem = await readFile(caKeyPath, "utf8").catch(() => undefined);
  let ca = caPem && caKeyPem ? await loadCertificateAuthority(caPem, caKeyPem) : undefined;
  let fresh = false;
  if (!ca) {
    ca = await createCertificateAuthority("agentid Entra emulator CA");
    caPem = ca.certPem;
    await writeFile(caKeyPath, ca.keyPem, { mode: 0o600 });
    await writeFile(caPath, ca.certPem);
    fresh = true;
  }
  const savedHosts = await readFile(hostsPath, "utf8").catch(() => "");
  const certPem = await readFile(certPath, "utf8").catch(() => undefined);
  const keyPem = await readFile(keyPath, "utf8").catch(() => undefined);
  if (!fresh && certPem && keyPem && savedHosts === JSON.stringify(names)) {
    return { caPem: ca.certPem, caPath, certPem, keyPem };
  }
  const leaf = await issueCertificate(ca, {
    commonName: "agentid Entra emulator",
    dnsNames: names.filter((n) => isIP(n) === 0),
    ipAddresses: names.filter((n) => isIP(n) !== 0),
    usage: "server",
    validDays: 825,
  });
  await writeFile(keyPath, leaf.keyPem, { mode: 0o600 });
  await writeFile(certPath, leaf.certPem);
  await writeFile(hostsPath, JSON.stringify(names));
  return { caPem: ca.certPem, caPath, certPem: leaf.certPem, keyPem: leaf.keyPem };
}
