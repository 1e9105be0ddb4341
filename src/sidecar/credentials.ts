import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import type { Logger } from "pino";
import { createClient } from "./acquire/clients.ts";
import type { INetworkModule, ManagedIdentityApplication } from "./acquire/msal.ts";
import { loadMsal } from "./acquire/msal.ts";
import type { CredentialSpec } from "./config/types.ts";
import { readVaultSecret, type VaultTokenSource } from "./keyvault.ts";
import type { Outbound } from "./outbound.ts";

// The CommonJS view of node:fs: its ESM namespace loads the promises API too (see server.ts).
const { readFileSync, statSync } = process.getBuiltinModule("node:fs");

/** How the blueprint proves itself to Entra, in the form msal-node's `auth` options take. */
export type ClientCredential =
  | { kind: "secret"; clientSecret: string }
  | { kind: "assertion"; getAssertion: () => Promise<string> }
  | { kind: "certificate"; thumbprintSha256: string; privateKey: string; x5c: string };

export interface LoadedCredential {
  /** For logs and errors: index and type, never the secret. */
  label: string;
  credential: ClientCredential;
}

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function jwtExpiry(jwt: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      exp?: unknown;
    };
    return typeof payload.exp === "number" ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A signed assertion read from a file that Kubernetes rotates (a projected service-account token).
 * The file is re-read whenever its identity, size or modification time changes, or the cached JWT has
 * expired; otherwise the last content is reused. Only network acquisitions call this, never the hot path.
 */
export class AssertionFile {
  readonly path: string;
  #content = "";
  #stamp = "";
  #expiresAt: number | undefined;

  constructor(path: string) {
    this.path = path;
  }

  read(now = Date.now()): string {
    const st = statSync(this.path);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const expired = this.#expiresAt !== undefined && now >= this.#expiresAt;
    if (stamp !== this.#stamp || expired || this.#content === "") {
      const content = readFileSync(this.path, "utf8").trim();
      if (!JWT.test(content)) throw new Error(`${this.path} does not hold a JWT`);
      this.#content = content;
      this.#stamp = stamp;
      this.#expiresAt = jwtExpiry(content);
    }
    return this.#content;
  }
}

/**
 * The certificates and the private key of a PKCS#12 (PFX) file, as PEM. node-forge reads every
 * encryption such files use (PBES2 with AES, the legacy 3DES and RC2 of Windows exports), which Node's
 * crypto cannot; it is loaded only for these credentials. A wrong password is reported as such.
 */
export function pfxToPem(der: Buffer, password: string | undefined, source: string): string {
  const forge = process.getBuiltinModule("node:module").createRequire(import.meta.url)(
    "node-forge",
  ) as typeof import("node-forge");
  let p12: import("node-forge").pkcs12.Pkcs12Pfx;
  try {
    const asn1 = () => forge.asn1.fromDer(forge.util.createBuffer(der.toString("binary")));
    if (password !== undefined) p12 = forge.pkcs12.pkcs12FromAsn1(asn1(), password);
    else {
      // No password configured: a PFX exported without one (Key Vault's), else one with an empty password.
      try {
        p12 = forge.pkcs12.pkcs12FromAsn1(asn1());
      } catch {
        p12 = forge.pkcs12.pkcs12FromAsn1(asn1(), "");
      }
    }
  } catch (error) {
    const message = (error as Error).message ?? "";
    throw new Error(
      /mac|password|invalid/i.test(message)
        ? `${source}: the PFX cannot be opened: wrong or missing CertificatePassword`
        : `${source}: not a PFX (PKCS#12) or PEM certificate`,
    );
  }
  // PKCS#12 bag types (RFC 7292): certBag, pkcs8ShroudedKeyBag, keyBag.
  const oids = {
    cert: "1.2.840.113549.1.12.10.1.3",
    shrouded: "1.2.840.113549.1.12.10.1.2",
    key: "1.2.840.113549.1.12.10.1.1",
  };
  const bags = (type: string) => p12.getBags({ bagType: type })[type] ?? [];
  const pems: string[] = [];
  for (const bag of bags(oids.cert)) if (bag.cert) pems.push(forge.pki.certificateToPem(bag.cert));
  const keyBags = [...bags(oids.shrouded), ...bags(oids.key)];
  const key = keyBags.find((b) => b.key)?.key;
  if (!key) throw new Error(`${source}: the PFX holds no private key (export the certificate with its key)`);
  pems.push(forge.pki.privateKeyToPem(key));
  return pems.join("\n");
}

/** PEM text, or a PFX turned into PEM (a PEM file is text that holds a PEM armour). */
function certificateText(bytes: Buffer, password: string | undefined, source: string): string {
  const text = bytes.toString("utf8");
  if (text.includes("-----BEGIN ")) return text;
  return pfxToPem(bytes, password, source);
}

function loadCertificate(path: string, password?: string): ClientCredential {
  return certificateFromPem(certificateText(readFileSync(path), password, path), path);
}

function certificateFromPem(pem: string, path: string): ClientCredential {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${path} holds no PEM certificate`);
  const key = createPrivateKey(pem);
  // Entra's certificate credentials are RS256/PS256 assertions: any other key could never sign one.
  if (key.asymmetricKeyType !== "rsa") {
    throw new Error(
      `${path}: the key is ${String(key.asymmetricKeyType)}; Entra certificate credentials need an RSA key`,
    );
  }
  const leaf = blocks.find((b) => new X509Certificate(b).checkPrivateKey(key));
  if (!leaf) throw new Error(`${path}: the private key does not match the certificate`);
  return {
    kind: "certificate",
    thumbprintSha256: createHash("sha256").update(new X509Certificate(leaf).raw).digest("hex"),
    privateKey: key.export({ type: "pkcs8", format: "pem" }).toString(),
    // msal-node reads x5c as PEM (a bare base64 body became an empty x5c header); leaf first, as RFC 7515 asks.
    x5c: [leaf, ...blocks.filter((b) => b !== leaf)].join("\n"),
  };
}

function managedIdentity(
  spec: Extract<CredentialSpec, { sourceType: "SignedAssertionFromManagedIdentity" }>,
  networkClient: INetworkModule,
): ClientCredential {
  // msal-node finds the endpoint (IMDS, App Service, Arc …) from the environment, as Azure SDKs do.
  let app: ManagedIdentityApplication | undefined;
  const resource = spec.tokenExchangeUrl;
  return {
    kind: "assertion",
    getAssertion: async () => {
      if (!app) {
        const msal = await loadMsal();
        app = new msal.ManagedIdentityApplication({
          ...(spec.managedIdentityClientId
            ? { managedIdentityIdParams: { userAssignedClientId: spec.managedIdentityClientId } }
            : {}),
          system: { networkClient },
        });
      }
      return (await app.acquireToken({ resource })).accessToken;
    },
  };
}

/** What a `KeyVault` credential needs to reach the vault (start.ts gives it; tests may leave it out). */
export interface VaultContext {
  outbound: Outbound;
  /** Authority host with a trailing slash (`AZURE_AUTHORITY_HOST` wins for workload identity). */
  instance: string;
  /** The sidecar's tenant, when Key Vault's challenge names none. */
  tenantId: string;
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
}

/**
 * A token for Key Vault with the pod's own identity, as Azure SDKs' default chain finds it: workload
 * identity when `AZURE_FEDERATED_TOKEN_FILE` and `AZURE_CLIENT_ID` are set (the projected token as the
 * assertion of that app), else the managed identity (user-assigned by `ManagedIdentityClientId`).
 */
function vaultTokens(
  spec: Extract<CredentialSpec, { sourceType: "KeyVault" }>,
  vault: VaultContext,
  networkClient: INetworkModule,
): VaultTokenSource {
  return async (resource, challengeTenant) => {
    const msal = await loadMsal();
    const env = vault.env;
    const file = env.AZURE_FEDERATED_TOKEN_FILE;
    if (file && env.AZURE_CLIENT_ID && !spec.managedIdentityClientId) {
      const tenant = challengeTenant ?? env.AZURE_TENANT_ID ?? vault.tenantId;
      const host = env.AZURE_AUTHORITY_HOST
        ? `${env.AZURE_AUTHORITY_HOST.replace(/\/+$/, "")}/`
        : vault.instance;
      const assertion = new AssertionFile(file);
      const client = createClient(
        msal,
        { instance: host, networkClient, logger: vault.logger },
        env.AZURE_CLIENT_ID,
        tenant,
        {
          kind: "assertion",
          getAssertion: async () => assertion.read(),
        },
      );
      const result = await client.acquireTokenByClientCredential({
        scopes: [`${resource}/.default`],
        skipCache: true,
      });
      if (!result?.accessToken) throw new Error("Entra returned no token for Key Vault");
      return result.accessToken;
    }
    const app = new msal.ManagedIdentityApplication({
      ...(spec.managedIdentityClientId
        ? { managedIdentityIdParams: { userAssignedClientId: spec.managedIdentityClientId } }
        : {}),
      system: { networkClient },
    });
    return (await app.acquireToken({ resource })).accessToken;
  };
}

async function keyVaultCertificate(
  spec: Extract<CredentialSpec, { sourceType: "KeyVault" }>,
  vault: VaultContext | undefined,
  networkClient: INetworkModule,
): Promise<ClientCredential> {
  if (!vault) throw new Error("Key Vault cannot be reached from here");
  const source = `${spec.vaultUrl} certificate '${spec.certificateName}'`;
  const secret = await readVaultSecret(
    vault.outbound,
    spec.vaultUrl,
    spec.certificateName,
    vaultTokens(spec, vault, networkClient),
  );
  // application/x-pkcs12 (the default): the PFX, base64, without a password; application/x-pem-file: PEM.
  const bytes = /pem/i.test(secret.contentType ?? "")
    ? Buffer.from(secret.value, "utf8")
    : Buffer.from(secret.value, "base64");
  return certificateFromPem(certificateText(bytes, undefined, source), source);
}

/**
 * Loads one configured credential. Throws with a message naming the credential and the reason
 * (never its value) when it cannot be used.
 */
export async function loadCredential(
  spec: CredentialSpec,
  networkClient: INetworkModule,
  vault?: VaultContext,
): Promise<LoadedCredential> {
  const label = `AzureAd:ClientCredentials:${spec.index} (${spec.sourceType})`;
  try {
    switch (spec.sourceType) {
      case "ClientSecret":
        return { label, credential: { kind: "secret", clientSecret: spec.clientSecret } };
      case "SignedAssertionFilePath": {
        const file = new AssertionFile(spec.path);
        file.read();
        return { label, credential: { kind: "assertion", getAssertion: async () => file.read() } };
      }
      case "SignedAssertionFromManagedIdentity":
        return { label, credential: managedIdentity(spec, networkClient) };
      case "Path":
        return { label, credential: loadCertificate(spec.certificatePath, spec.password) };
      case "Base64Encoded": {
        const source = "Base64EncodedValue";
        const bytes = Buffer.from(spec.value.replace(/\s+/g, ""), "base64");
        return {
          label,
          credential: certificateFromPem(certificateText(bytes, spec.password, source), source),
        };
      }
      case "KeyVault":
        return { label, credential: await keyVaultCertificate(spec, vault, networkClient) };
    }
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? `file not found: ${(error as NodeJS.ErrnoException).path ?? ""}`
        : (error as Error).message;
    throw new Error(`${label}: ${reason}`);
  }
}

/** Loads every credential in index order; the caller uses the first that loaded and reports the rest. */
export async function loadCredentials(
  specs: CredentialSpec[],
  networkClient: INetworkModule,
  vault?: VaultContext,
): Promise<{ loaded: LoadedCredential[]; problems: string[] }> {
  const loaded: LoadedCredential[] = [];
  const problems: string[] = [];
  for (const spec of specs) {
    try {
      loaded.push(await loadCredential(spec, networkClient, vault));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return { loaded, problems };
}
