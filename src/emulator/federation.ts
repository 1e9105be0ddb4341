import { rootCertificates } from "node:tls";
import { createRemoteJWKSet, customFetch, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from "jose";
import { Agent, fetch } from "undici";

/** Asymmetric algorithms accepted on external assertions; `none` and HMAC never are. */
export const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
];

export class FederationError extends Error {
  override name = "FederationError";
  readonly kind: "metadata" | "signature";
  constructor(kind: "metadata" | "signature", message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * Verifies assertions from external OIDC issuers (a Kubernetes API server, GitHub, another IdP): it
 * fetches `<issuer>/.well-known/openid-configuration` and the `jwks_uri` over HTTPS, trusting the public
 * roots plus the configured CAs (a local kube-apiserver signs its own serving certificate).
 */
export class FederationVerifier {
  readonly #dispatcher: Agent;
  readonly #jwks = new Map<string, JWTVerifyGetKey>();
  readonly #timeoutMs: number;

  readonly #injectedFailure: () => boolean;

  /**
   * `injectedFailure` (the admin API's `issuerFetch` fault): when it answers true, this verification
   * fetches the issuer's metadata afresh and that fetch fails, as when the issuer cannot be reached.
   */
  constructor(trustedCaPems: string[] = [], timeoutMs = 5000, injectedFailure: () => boolean = () => false) {
    this.#dispatcher = new Agent({ connect: { ca: [...rootCertificates, ...trustedCaPems] } });
    this.#timeoutMs = timeoutMs;
    this.#injectedFailure = injectedFailure;
  }

  async verify(token: string, issuer: string): Promise<JWTPayload> {
    const getKey = await this.#keysOf(issuer);
    try {
      const { payload } = await jwtVerify(token, getKey, { algorithms: ASYMMETRIC_ALGORITHMS, issuer });
      return payload;
    } catch (error) {
      const code = (error as { code?: string }).code ?? "";
      const aboutToken =
        /^ERR_(JWS|JWT|JWK)_|^ERR_JWKS_(NO|MULTIPLE)_MATCHING_KEY|^ERR_JOSE_ALG_NOT_ALLOWED/.test(code);
      if (!aboutToken) {
        this.#jwks.delete(issuer);
        throw new FederationError(
          "metadata",
          `could not fetch the signing keys: ${(error as Error).message}`,
        );
      }
      throw new FederationError("signature", describe(code, error));
    }
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }

  async #keysOf(issuer: string): Promise<JWTVerifyGetKey> {
    if (this.#injectedFailure()) {
      // The keys are fetched again after the fault, as after any failed fetch.
      this.#jwks.delete(issuer);
      throw new FederationError(
        "metadata",
        "injected fault: the issuer's discovery document could not be fetched",
      );
    }
    const cached = this.#jwks.get(issuer);
    if (cached) return cached;
    const doFetch = (
      url: string,
      init: { headers?: Headers; method?: string; signal?: AbortSignal; redirect?: "manual" },
    ) => fetch(url, { ...(init as object), dispatcher: this.#dispatcher }) as unknown as Promise<Response>;
    let jwksUri: string;
    try {
      const url = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
      if (!url.startsWith("https://")) throw new Error("the issuer is not an https URL");
      const response = await doFetch(url, { signal: AbortSignal.timeout(this.#timeoutMs) });
      if (!response.ok) throw new Error(`${url} answered ${response.status}`);
      const doc = (await response.json()) as { jwks_uri?: unknown; issuer?: unknown };
      if (typeof doc.jwks_uri !== "string" || !doc.jwks_uri.startsWith("https://")) {
        throw new Error("the discovery document has no https jwks_uri");
      }
      jwksUri = doc.jwks_uri;
    } catch (error) {
      throw new FederationError("metadata", (error as Error).message);
    }
    const getKey = createRemoteJWKSet(new URL(jwksUri), {
      timeoutDuration: this.#timeoutMs,
      [customFetch]: doFetch,
    });
    this.#jwks.set(issuer, getKey);
    return getKey;
  }
}

function describe(code: string, error: unknown): string {
  switch (code) {
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "The provided signature value did not match the expected signature value.";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "No key in the issuer's JWKS matches the assertion's key id.";
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "The signing algorithm is not allowed.";
    default:
      return (error as Error).message;
  }
}
