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

/** The tenant id in an issuer of this emulator (`<baseUrl>/<tid>/v2.0`), or undefined. */
export function ownIssuerTenant(baseUrl: string, issuer: unknown): string | undefined {
  if (typeof issuer !== "string" || !issuer.startsWith(`${baseUrl}/`)) return undefined;
  const m = /^([^/]+)\/v2\.0$/.exec(issuer.slice(baseUrl.length + 1));
  return m?.[1];
}
