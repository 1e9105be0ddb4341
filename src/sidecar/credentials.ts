import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import type { INetworkModule, ManagedIdentityApplication } from "./acquire/msal.ts";
import { loadMsal } from "./acquire/msal.ts";
import type { CredentialSpec } from "./config/types.ts";

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

function loadCertificate(path: string): ClientCredential {
  const pem = readFileSync(path, "utf8");
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

/**
 * Loads one configured credential. Throws with a message naming the credential and the reason
 * (never its value) when it cannot be used.
 */
export function loadCredential(spec: CredentialSpec, networkClient: INetworkModule): LoadedCredential {
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
        return { label, credential: loadCertificate(spec.certificatePath) };
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
export function loadCredentials(
  specs: CredentialSpec[],
  networkClient: INetworkModule,
): { loaded: LoadedCredential[]; problems: string[] } {
  const loaded: LoadedCredential[] = [];
  const problems: string[] = [];
  for (const spec of specs) {
    try {
      loaded.push(loadCredential(spec, networkClient));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return { loaded, problems };
}
