import {
  decodeJwt,
  decodeProtectedHeader,
  type JWTPayload,
  jwtVerify,
  type ProtectedHeaderParameters,
} from "jose";
import { errors } from "./errors.ts";
import type { KeyStore } from "./keys.ts";

export interface DecodedJwt {
  header: ProtectedHeaderParameters;
  payload: JWTPayload;
}

/** Reads a JWT without trusting it, or fails with AADSTS50027 (malformed). */
export function decodeUntrusted(token: string, what: string): DecodedJwt {
  try {
    return { header: decodeProtectedHeader(token), payload: decodeJwt(token) };
  } catch {
    throw errors.malformedJwt(`${what} is not a JWT`);
  }
}

/** True when the signature over one of this emulator's tokens checks out with a published key. */
export async function ownSignatureValid(keys: KeyStore, tenantId: string, token: string): Promise<boolean> {
  try {
    await jwtVerify(
      token,
      async (header) => {
        const key = header.kid ? await keys.publicKey(tenantId, header.kid) : undefined;
        if (!key) throw new Error("unknown kid");
        return key;
      },
      { algorithms: ["RS256"], clockTolerance: Number.MAX_SAFE_INTEGER },
    );
    return true;
  } catch {
    return false;
  }
}

export function audiences(payload: JWTPayload): string[] {
  if (typeof payload.aud === "string") return [payload.aud];
  return Array.isArray(payload.aud) ? payload.aud : [];
}

/** The tenant id in a v2 issuer of this emulator (`<baseUrl>/<tid>/v2.0`), or undefined. */
export function ownV2IssuerTenant(baseUrl: string, issuer: unknown): string | undefined {
  if (typeof issuer !== "string" || !issuer.startsWith(`${baseUrl}/`)) return undefined;
  const m = /^([^/]+)\/v2\.0$/.exec(issuer.slice(baseUrl.length + 1));
  return m?.[1];
}

/**
 * The tenant id in the issuer of one of this emulator's access tokens: v2 (`<baseUrl>/<tid>/v2.0`) or v1
 * (`https://sts.windows.net/<tid>/`, which the emulator writes for v1 tokens). The signature check that
 * follows decides whether the token is really ours.
 */
export function ownIssuerTenant(baseUrl: string, issuer: unknown): string | undefined {
  const v2 = ownV2IssuerTenant(baseUrl, issuer);
  if (v2 !== undefined || typeof issuer !== "string") return v2;
  return /^https:\/\/sts\.windows\.net\/([0-9a-fA-F-]{36})\/$/.exec(issuer)?.[1];
}

/** The client a token was issued to: `azp` (v2) or `appid` (v1). */
export function clientAppIdOf(payload: JWTPayload): string | undefined {
  const id = payload.azp ?? payload.appid;
  return typeof id === "string" ? id : undefined;
}
