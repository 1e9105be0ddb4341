import type { Outbound } from "./outbound.ts";

/**
 * Reads a certificate with its private key from Azure Key Vault, as Microsoft.Identity.Web's `KeyVault`
 * credential source does: the secret of the certificate's name holds it (a PFX, base64, or PEM text,
 * by its `contentType`). The first request goes without a token; Key Vault's 401 challenge names the
 * tenant whose token it wants. The resource is Key Vault's of the vault's cloud, from the vault's host
 * (`*.vault.azure.net` → `https://vault.azure.net`, `*.vault.azure.cn` → `https://vault.azure.cn`, …),
 * never taken from the challenge, so a vault URL cannot make the sidecar send a token elsewhere.
 */
export interface VaultSecret {
  value: string;
  contentType?: string;
}

export type VaultTokenSource = (resource: string, tenant: string | undefined) => Promise<string>;

/** Key Vault's resource for a vault URL's host (pure). */
export function vaultResource(vaultUrl: string): string {
  const host = new URL(vaultUrl).hostname.toLowerCase();
  const m = /^[^.]+\.(vault\.[a-z0-9.-]+)$/.exec(host);
  return m ? `https://${m[1]}` : "https://vault.azure.net";
}

/** The tenant of a Key Vault challenge (`Bearer authorization="https://login…/<tenant>", resource=…`) (pure). */
export function challengeTenant(header: string | string[] | undefined): string | undefined {
  const text = Array.isArray(header) ? header.join(", ") : header;
  const authority = text ? /authorization(?:_uri)?="([^"]+)"/i.exec(text)?.[1] : undefined;
  if (!authority) return undefined;
  try {
    return new URL(authority).pathname.split("/").filter((s) => s !== "")[0];
  } catch {
    return undefined;
  }
}

export async function readVaultSecret(
  outbound: Outbound,
  vaultUrl: string,
  name: string,
  token: VaultTokenSource,
): Promise<VaultSecret> {
  const url = `${vaultUrl}secrets/${encodeURIComponent(name)}?api-version=7.4`;
  const host = new URL(url).host;
  const get = (authorization?: string) =>
    outbound.request(url, {
      method: "GET",
      headers: { accept: "application/json", ...(authorization ? { authorization } : {}) },
      timeoutMs: 15_000,
      maxResponseBytes: 1024 * 1024,
    });
  const challenge = await get();
  let answer = challenge;
  if (challenge.status === 401) {
    const bearer = await token(
      vaultResource(vaultUrl),
      challengeTenant(challenge.headers["www-authenticate"]),
    );
    answer = await get(`Bearer ${bearer}`);
  }
  let body: { value?: unknown; contentType?: unknown; error?: { code?: unknown; message?: unknown } } = {};
  try {
    body = JSON.parse(answer.body.toString("utf8")) as typeof body;
  } catch {
    // not JSON: the status says enough
  }
  if (answer.status !== 200 || typeof body.value !== "string") {
    // Key Vault's error texts name the caller and the vault, never a secret.
    const code = typeof body.error?.code === "string" ? ` ${body.error.code}` : "";
    const message = typeof body.error?.message === "string" ? `: ${body.error.message.split("\r\n")[0]}` : "";
    throw new Error(`Key Vault ${host} answered ${answer.status}${code} for '${name}'${message}`);
  }
  return {
    value: body.value,
    ...(typeof body.contentType === "string" ? { contentType: body.contentType } : {}),
  };
}
