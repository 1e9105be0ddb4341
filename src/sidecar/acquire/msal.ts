/**
 * msal-node is loaded on first use and warmed in the background once the sidecar listens: a cached
 * token never needs it, and importing it would otherwise delay readiness.
 */
export type Msal = typeof import("@azure/msal-node");

// The one module that names msal-node (biome.json refuses it elsewhere in src/sidecar, type-only
// imports included): types from here, values through loadMsal().
export type {
  AuthenticationResult,
  ClientAssertionCallback,
  ConfidentialClientApplication,
  Configuration,
  INetworkModule,
  ManagedIdentityApplication,
  NetworkRequestOptions,
  NetworkResponse,
} from "@azure/msal-node";

let loading: Promise<Msal> | undefined;

/**
 * msal-node's CommonJS build, one bundled file, rather than its ESM build: the ESM build is about
 * 120 modules and imports node:http as ESM (which loads Node's bundled undici), together about
 * 8 MB more resident memory for the same code. Same package, same version, same API.
 */
export function loadMsal(): Promise<Msal> {
  loading ??= Promise.resolve().then(
    () => process.getBuiltinModule("node:module").createRequire(import.meta.url)("@azure/msal-node") as Msal,
  );
  return loading;
}

/** The shape of msal-node's AuthError family, for checks that must not load msal-node. */
interface MsalErrorShape {
  name: string;
  errorCode: string;
  errorMessage: string;
}

function isMsalError(error: unknown): error is MsalErrorShape {
  return (
    error instanceof Error &&
    typeof (error as Partial<MsalErrorShape>).errorCode === "string" &&
    typeof (error as Partial<MsalErrorShape>).errorMessage === "string"
  );
}

/** Entra's own refusal (an `AADSTS…` answer), or undefined for anything else. */
export function entraRefusal(error: unknown): string | undefined {
  if (!isMsalError(error)) return undefined;
  if (
    error.name === "ServerError" ||
    error.name === "InteractionRequiredAuthError" ||
    /AADSTS\d+/.test(error.errorMessage)
  ) {
    return error.errorMessage || error.errorCode;
  }
  return undefined;
}

/**
 * msal-node could not reach the network (outside our own network client), or could not load the
 * authority's OpenID configuration, which it reports as `endpoints_resolution_error` (Entra or the
 * outbound proxy unreachable on a sidecar's first token request).
 */
export function isMsalNetworkError(error: unknown): boolean {
  return (
    isMsalError(error) &&
    (error.errorCode === "network_error" || error.errorCode === "endpoints_resolution_error")
  );
}
