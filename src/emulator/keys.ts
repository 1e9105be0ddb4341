import type { webcrypto } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";

type CryptoKey = webcrypto.CryptoKey;

/** How many signing keys a tenant publishes: the current one and the one before it (rollover). */
export const PUBLISHED_KEYS = 2;

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  /** Imported once: verifying our own tokens (T1, T2, OBO assertions) is on the token hot path. */
  publicKey: CryptoKey;
  publicJwk: JWK;
  privateJwk: JWK;
}

export interface PublicJwk extends JWK {
  kid: string;
  use: "sig";
  kty: string;
}

/**
 * RS256 signing keys per tenant, as Entra publishes them at /{tenant}/discovery/v2.0/keys. The newest key
 * signs; the previous one stays published so that tokens it signed still validate after a rotation.
 * Keys are written to `<stateDir>/signing-keys.json` so tokens survive an emulator restart.
 */
export class KeyStore {
  readonly #keys = new Map<string, SigningKey[]>();
  readonly #pending = new Map<string, Promise<SigningKey[]>>();
  readonly #file: string | undefined;

  private constructor(file: string | undefined) {
    this.#file = file;
  }

  static async open(stateDir: string | undefined): Promise<KeyStore> {
    const store = new KeyStore(stateDir ? join(stateDir, "signing-keys.json") : undefined);
    if (store.#file) {
      const saved = await readFile(store.#file, "utf8").catch(() => undefined);
      if (saved !== undefined) {
        try {
          const parsed = JSON.parse(saved) as Record<string, JWK[]>;
          for (const [tenant, jwks] of Object.entries(parsed)) {
            store.#keys.set(tenant, await Promise.all(jwks.map(fromPrivateJwk)));
          }
        } catch (error) {
          throw new Error(
            `${store.#file} is not a valid signing key file (${(error as Error).message}); delete it to start with new keys`,
          );
        }
      }
    }
    return store;
  }

  /** The published public keys of a tenant (creating its first key on first use). */
  async jwks(tenantId: string): Promise<PublicJwk[]> {
    const keys = await this.#tenantKeys(tenantId);
    return keys.map((k) => ({
      ...k.publicJwk,
      kid: k.kid,
      use: "sig",
      kty: k.publicJwk.kty ?? "RSA",
      alg: "RS256",
    }));
  }

  async sign(tenantId: string, payload: JWTPayload): Promise<string> {
    const keys = await this.#tenantKeys(tenantId);
    const current = keys[keys.length - 1];
    if (!current) throw new Error(`no signing key for tenant ${tenantId}`);
    return new SignJWT(payload)
      .setProtectedHeader({ alg: "RS256", typ: "JWT", kid: current.kid })
      .sign(current.privateKey);
  }

  /** A published public key by kid, for verifying tokens this emulator issued. */
  async publicKey(tenantId: string, kid: string): Promise<CryptoKey | undefined> {
    return (await this.#tenantKeys(tenantId)).find((k) => k.kid === kid)?.publicKey;
  }

  /** Adds a new signing key; the oldest beyond PUBLISHED_KEYS is withdrawn. Returns the new kid. */
  async rotate(tenantId: string): Promise<string> {
    const keys = await this.#tenantKeys(tenantId);
    const fresh = await newKey();
    const next = [...keys, fresh].slice(-PUBLISHED_KEYS);
    this.#keys.set(tenantId, next);
    await this.#save();
    return fresh.kid;
  }

  async #tenantKeys(tenantId: string): Promise<SigningKey[]> {
    const existing = this.#keys.get(tenantId);
    if (existing) return existing;
    // Two requests for a new tenant must not create two different first keys.
    let pending = this.#pending.get(tenantId);
    if (!pending) {
      pending = newKey().then(async (k) => {
        this.#keys.set(tenantId, [k]);
        this.#pending.delete(tenantId);
        await this.#save();
        return [k];
      });
      this.#pending.set(tenantId, pending);
    }
    return pending;
  }

  async #save(): Promise<void> {
    if (!this.#file) return;
    const out: Record<string, JWK[]> = {};
    for (const [tenant, keys] of this.#keys) out[tenant] = keys.map((k) => k.privateJwk);
    await writeFile(this.#file, JSON.stringify(out), { mode: 0o600 });
  }
}

async function newKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair("RS256", { modulusLength: 2048, extractable: true });
  return fromPrivateJwk(await exportJWK(privateKey));
}

async function fromPrivateJwk(privateJwk: JWK): Promise<SigningKey> {
  const { kty, n, e } = privateJwk;
  const publicJwk: JWK = { kty, n, e };
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateKey = (await importJWK({ ...privateJwk, alg: "RS256" }, "RS256")) as CryptoKey;
  const publicKey = (await importJWK({ ...publicJwk, alg: "RS256" }, "RS256")) as CryptoKey;
  return { kid, privateKey, publicKey, publicJwk, privateJwk };
}
