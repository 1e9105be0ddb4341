// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import { createHash, webcrypto } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, SignJWT } from "jose";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;

/** How many signing keys are published: the current one and the one before it (rollover). */
export const PUBLISHED_KEYS = 2;

interface SigningKey {
  /** Entra's `kid` and `x5t`: the base64url SHA-1 thumbprint of the key's certificate. */
  kid: string;
  privateKey: CryptoKey;
  /** Imported once: verifying our own tokens (T1, T2, OBO assertions) is on the token hot path. */
  publicKey: CryptoKey;
  publicJwk: JWK;
  privateJwk: JWK;
  /** The self-signed certificate Entra publishes in `x5c` (base64 DER). */
  certificate: string;
}

export interface PublicJwk extends JWK {
  kid: string;
  use: "sig";
  kty: string;
  x5t: string;
  x5c: string[];
}

interface SavedKey {
  jwk: JWK;
  certificate: string;
}

/**
 * The RS256 signing keys, as Entra publishes them at /{tenant}/discovery/v2.0/keys: one set shared by all
 * tenants (Entra's keys are the same in every tenant and at /common), each with `x5t` and an `x5c`
 * self-signed certificate, `kid` equal to `x5t`. The newest key signs; the previous one stays published so
 * that tokens it signed still validate after a rotation. Keys are written to `<stateDir>/signing-keys.json`
 * so tokens survive an emulator restart. The tenant arguments are kept for callers; every tenant gets the
 * same keys.
 */
export class KeyStore {
  #keys: SigningKey[] = [];
  #pending: Promise<SigningKey[]> | undefined;
  readonly #file: string | undefined;

  private constructor(file: string | undefined) {
    this.#file = file;
  }

  static async open(stateDir: string | undefined): Promise<KeyStore> {
    const store = new KeyStore(stateDir ? join(stateDir, "signing-keys.json") : undefined);
    if (store.#file) {
      const saved = await readFile(store.#file, "utf8").catch(() => undefined);
      if (saved !== undefined) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(saved);
        } catch (error) {
          throw new Error(
            `${store.#file} is not a valid signing key file (${(error as Error).message}); delete it to start with new keys`,
          );
        }
        // Files of older emulators kept keys per tenant without certificates: start a new shared set.
        const keys = (parsed as { keys?: unknown }).keys;
        if (Array.isArray(keys)) store.#keys = await Promise.all((keys as SavedKey[]).map(fromSaved));
      }
    }
    return store;
  }

  /** The published public keys (creating the first key on first use). */
  async jwks(_tenantId?: string): Promise<PublicJwk[]> {
    const keys = await this.#current();
    return keys.map((k) => ({
      kty: k.publicJwk.kty ?? "RSA",
      use: "sig",
      kid: k.kid,
      x5t: k.kid,
      n: k.publicJwk.n,
      e: k.publicJwk.e,
      x5c: [k.certificate],
    }));
  }

  async sign(_tenantId: string, payload: JWTPayload): Promise<string> {
    const keys = await this.#current();
    const current = keys[keys.length - 1];
    if (!current) throw new Error("no signing key");
    return new SignJWT(payload)
      .setProtectedHeader({ typ: "JWT", alg: "RS256", x5t: current.kid, kid: current.kid })
      .sign(current.privateKey);
  }

  /** A published public key by kid, for verifying tokens this emulator issued. */
  async publicKey(_tenantId: string, kid: string): Promise<CryptoKey | undefined> {
    return (await this.#current()).find((k) => k.kid === kid)?.publicKey;
  }

  /** Adds a new signing key (for every tenant); the oldest beyond PUBLISHED_KEYS is withdrawn. */
  async rotate(_tenantId?: string): Promise<string> {
    const keys = await this.#current();
    const fresh = await newKey();
    this.#keys = [...keys, fresh].slice(-PUBLISHED_KEYS);
    await this.#save();
    return fresh.kid;
  }

  async #current(): Promise<SigningKey[]> {
    if (this.#keys.length > 0) return this.#keys;
    // Two first requests must not create two different first keys.
    this.#pending ??= newKey().then(async (k) => {
      this.#keys = [k];
      await this.#save();
      return this.#keys;
    });
    return this.#pending;
  }

  async #save(): Promise<void> {
    if (!this.#file) return;
    const out = {
      keys: this.#keys.map((k): SavedKey => ({ jwk: k.privateJwk, certificate: k.certificate })),
    };
    await writeFile(this.#file, JSON.stringify(out), { mode: 0o600 });
  }
}

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", {
    modulusLength: 2048,
    extractable: true,
  });
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString("hex")
      .replace(/^[89a-f]/, "1"),
    name: "CN=accounts.accesscontrol.windows.net",
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + 5 * 365 * 86_400_000),
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    keys: { privateKey, publicKey } as unknown as webcrypto.CryptoKeyPair,
  });
  return fromSaved({
    jwk: await exportJWK(privateKey),
    certificate: Buffer.from(cert.rawData).toString("base64"),
  });
}

async function fromSaved(saved: SavedKey): Promise<SigningKey> {
  const privateJwk = saved.jwk;
  const { kty, n, e } = privateJwk;
  const publicJwk: JWK = { kty, n, e };
  const kid = createHash("sha1").update(Buffer.from(saved.certificate, "base64")).digest("base64url");
  const privateKey = (await importJWK({ ...privateJwk, alg: "RS256" }, "RS256")) as CryptoKey;
  const publicKey = (await importJWK({ ...publicJwk, alg: "RS256" }, "RS256")) as CryptoKey;
  return { kid, privateKey, publicKey, publicJwk, privateJwk, certificate: saved.certificate };
}
