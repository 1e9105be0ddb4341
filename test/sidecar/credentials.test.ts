import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { INetworkModule } from "@azure/msal-node";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { AssertionFile, loadCredentials } from "../../src/sidecar/credentials.ts";

const dir = mkdtempSync(join(tmpdir(), "sidecar-credentials-"));
const noNetwork: INetworkModule = {
  sendGetRequestAsync: () => Promise.reject(new Error("no network in this test")),
  sendPostRequestAsync: () => Promise.reject(new Error("no network in this test")),
};
const jwt = (n: number, exp = Math.floor(Date.now() / 1000) + 3600) =>
  `${Buffer.from('{"alg":"RS256"}').toString("base64url")}.${Buffer.from(JSON.stringify({ n, exp })).toString("base64url")}.sig`;

describe("credential sources", () => {
  it("loads a PEM certificate with its key as an msal-node client certificate", async () => {
    const ca = await createCertificateAuthority("test");
    const leaf = await issueCertificate(ca, { commonName: "blueprint", usage: "client" });
    const path = join(dir, "blueprint.pem");
    writeFileSync(path, `${leaf.certPem}\n${leaf.keyPem}`);
    const { loaded, problems } = await loadCredentials(
      [{ index: 0, sourceType: "Path", certificatePath: path }],
      noNetwork,
    );
    expect(problems).toEqual([]);
    const credential = loaded[0]?.credential;
    expect(credential?.kind).toBe("certificate");
    if (credential?.kind !== "certificate") return;
    expect(credential.thumbprintSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(credential.privateKey).toMatch(/BEGIN PRIVATE KEY/);
  });

  it("refuses a certificate whose key does not match, and a missing file, naming the entry", async () => {
    const ca = await createCertificateAuthority("test");
    const a = await issueCertificate(ca, { commonName: "a", usage: "client" });
    const b = await issueCertificate(ca, { commonName: "b", usage: "client" });
    const path = join(dir, "mismatch.pem");
    writeFileSync(path, `${a.certPem}\n${b.keyPem}`);
    const { loaded, problems } = await loadCredentials(
      [
        { index: 0, sourceType: "Path", certificatePath: path },
        { index: 1, sourceType: "SignedAssertionFilePath", path: join(dir, "nope") },
      ],
      noNetwork,
    );
    expect(loaded).toEqual([]);
    expect(problems[0]).toMatch(/ClientCredentials:0 \(Path\): .*does not match/);
    expect(problems[1]).toMatch(/ClientCredentials:1 \(SignedAssertionFilePath\): file not found/);
  });

  it("re-reads a token file when it is swapped, and not otherwise", () => {
    const path = join(dir, "token");
    writeFileSync(path, `${jwt(1)}\n`);
    const file = new AssertionFile(path);
    expect(file.read()).toBe(jwt(1));
    writeFileSync(`${path}.new`, jwt(2));
    renameSync(`${path}.new`, path);
    expect(file.read()).toBe(jwt(2));
    writeFileSync(`${path}.new`, "not a jwt");
    renameSync(`${path}.new`, path);
    expect(() => file.read()).toThrow(/does not hold a JWT/);
  });

  it("re-reads a token file whose JWT has expired", () => {
    const path = join(dir, "expiring");
    writeFileSync(path, jwt(1, 1000));
    const file = new AssertionFile(path);
    file.read(0);
    // Same size and stamp, but the cached JWT expired: read again (content may have been rewritten in place).
    expect(file.read(2_000_000)).toBe(jwt(1, 1000));
  });
});
