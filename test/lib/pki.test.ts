import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from "../../src/lib/pki.ts";

describe("pki", () => {
  it("issues a server certificate that Node's TLS stack accepts for 127.0.0.1 and localhost", async () => {
    const ca = await createCertificateAuthority("test-ca");
    const leaf = await issueCertificate(ca, {
      commonName: "server",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const parsed = new X509Certificate(leaf.certPem);
    expect(parsed.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(parsed.subjectAltName).toContain("DNS:localhost");
    expect(parsed.subjectAltName).toContain("IP Address:127.0.0.1");

    const server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end("ok"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    try {
      const { Agent, request } = await import("undici");
      const dispatcher = new Agent({ connect: { ca: ca.certPem } });
      const res = await request(`https://127.0.0.1:${port}/`, { dispatcher });
      expect(await res.body.text()).toBe("ok");
      const untrusted = new Agent({ connect: { ca: (await createCertificateAuthority("other")).certPem } });
      await expect(request(`https://127.0.0.1:${port}/`, { dispatcher: untrusted })).rejects.toThrow();
    } finally {
      server.close();
    }
  });

  it("puts organisations into the subject of a client certificate", async () => {
    const ca = await createCertificateAuthority("client-ca");
    const leaf = await issueCertificate(ca, {
      commonName: "admin",
      organizations: ["system:masters"],
      usage: "client",
    });
    expect(new X509Certificate(leaf.certPem).subject).toContain("O=system:masters");
  });

  it("reloads a CA from PEM and signs with it", async () => {
    const ca = await createCertificateAuthority("reloaded");
    const again = await loadCertificateAuthority(ca.certPem, ca.keyPem);
    const leaf = await issueCertificate(again, { commonName: "x", dnsNames: ["localhost"], usage: "server" });
    expect(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(true);
  });
});
