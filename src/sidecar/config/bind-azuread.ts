import { children, type FlatConfig, get } from "./flat.ts";
import { type CredentialSpec, DEFAULT_INSTANCE, TOKEN_EXCHANGE_AUDIENCE } from "./types.ts";
import { isGuid, isMetaTenant, isTenant, parseBool } from "./values.ts";

/** Microsoft's `CredentialSource` values that this sidecar does not implement (start-up error names them). */
const UNSUPPORTED_SOURCES = [
  "Certificate",
  "SignedAssertionFromVault",
  "AutoDecryptKeys",
  "CustomSignedAssertion",
  "ManagedCertificate",
];
const SUPPORTED_SOURCES = [
  "ClientSecret",
  "SignedAssertionFilePath",
  "SignedAssertionFromManagedIdentity",
  "Path",
  "Base64Encoded",
  "KeyVault",
];
/** Windows certificate stores: nothing to read on Linux, where the sidecar runs. */
const STORE_SOURCES = ["StoreWithThumbprint", "StoreWithDistinguishedName", "StoreWithSubjectName"];

export interface Environment {
  AZURE_FEDERATED_TOKEN_FILE?: string;
  AZURE_ACCESS_TOKEN_FILE?: string;
}

export interface AzureAdSection {
  instance: string;
  tenantId: string;
  clientId: string;
  audiences: string[];
  validateScopes?: string;
  credentials: CredentialSpec[];
}

function bindCredential(
  flat: FlatConfig,
  index: number,
  env: Environment,
  problems: string[],
  warnings: string[],
): CredentialSpec | undefined {
  const p = `AzureAd:ClientCredentials:${index}`;
  const skip = get(flat, `${p}:Skip`);
  if (skip !== undefined && parseBool(skip) === true) return undefined;
  const raw = get(flat, `${p}:SourceType`);
  if (raw === undefined || raw.trim() === "") {
    problems.push(`${p}:SourceType is missing (one of ${SUPPORTED_SOURCES.join(", ")})`);
    return undefined;
  }
  const sourceType = SUPPORTED_SOURCES.find((s) => s.toLowerCase() === raw.trim().toLowerCase());
  const store = STORE_SOURCES.find((s) => s.toLowerCase() === raw.trim().toLowerCase());
  if (store) {
    problems.push(
      `${p}:SourceType '${store}': certificate stores exist on Windows only, and the sidecar runs on Linux; export the certificate with its private key and use SourceType Path (a PEM or PFX file, with CertificatePassword), Base64Encoded or KeyVault`,
    );
    return undefined;
  }
  if (!sourceType) {
    const unsupported = UNSUPPORTED_SOURCES.find((s) => s.toLowerCase() === raw.trim().toLowerCase());
    problems.push(
      unsupported
        ? `${p}:SourceType '${unsupported}' is not supported by this sidecar (supported: ${SUPPORTED_SOURCES.join(", ")})`
        : `${p}:SourceType '${raw}' is unknown (supported: ${SUPPORTED_SOURCES.join(", ")})`,
    );
    return undefined;
  }
  switch (sourceType) {
    case "ClientSecret": {
      const clientSecret = get(flat, `${p}:ClientSecret`);
      if (!clientSecret) {
        problems.push(`${p}:ClientSecret is missing for SourceType ClientSecret`);
        return undefined;
      }
      return { index, sourceType, clientSecret };
    }
    case "SignedAssertionFilePath": {
      // Microsoft's README uses `SignedAssertionFilePath` as the path key; the property is
      // `SignedAssertionFileDiskPath`. Accept the README spelling too, but the real name wins.
      const readmeKey = get(flat, `${p}:SignedAssertionFilePath`);
      const path =
        get(flat, `${p}:SignedAssertionFileDiskPath`) ||
        readmeKey ||
        env.AZURE_FEDERATED_TOKEN_FILE ||
        env.AZURE_ACCESS_TOKEN_FILE;
      if (!get(flat, `${p}:SignedAssertionFileDiskPath`) && readmeKey) {
        warnings.push(
          `${p}:SignedAssertionFilePath used as the token file path; the documented key is SignedAssertionFileDiskPath`,
        );
      }
      if (!path) {
        problems.push(
          `${p}: SignedAssertionFilePath needs SignedAssertionFileDiskPath or the AZURE_FEDERATED_TOKEN_FILE environment variable`,
        );
        return undefined;
      }
      return { index, sourceType, path };
    }
    case "SignedAssertionFromManagedIdentity": {
      const id = get(flat, `${p}:ManagedIdentityClientId`);
      if (id && !isGuid(id)) problems.push(`${p}:ManagedIdentityClientId '${id}' is not a GUID`);
      const tokenExchangeUrl = get(flat, `${p}:TokenExchangeUrl`) || TOKEN_EXCHANGE_AUDIENCE;
      return { index, sourceType, tokenExchangeUrl, ...(id ? { managedIdentityClientId: id } : {}) };
    }
    case "Path": {
      const certificatePath = get(flat, `${p}:CertificateDiskPath`);
      if (!certificatePath) {
        problems.push(`${p}:CertificateDiskPath is missing for SourceType Path`);
        return undefined;
      }
      const password = get(flat, `${p}:CertificatePassword`);
      return { index, sourceType, certificatePath, ...(password ? { password } : {}) };
    }
    case "Base64Encoded": {
      const value = get(flat, `${p}:Base64EncodedValue`)?.trim();
      if (!value) {
        problems.push(`${p}:Base64EncodedValue is missing for SourceType Base64Encoded`);
        return undefined;
      }
      if (!/^[A-Za-z0-9+/=\s]+$/.test(value)) {
        problems.push(`${p}:Base64EncodedValue is not base64`);
        return undefined;
      }
      const password = get(flat, `${p}:CertificatePassword`);
      return { index, sourceType, value, ...(password ? { password } : {}) };
    }
    case "KeyVault": {
      const vaultUrl = get(flat, `${p}:KeyVaultUrl`)?.trim() ?? "";
      const certificateName = get(flat, `${p}:KeyVaultCertificateName`)?.trim() ?? "";
      let ok = true;
      try {
        if (new URL(vaultUrl).protocol !== "https:") throw new Error("not https");
      } catch {
        problems.push(
          `${p}:KeyVaultUrl '${vaultUrl}' must be an https URL like https://<vault>.vault.azure.net/`,
        );
        ok = false;
      }
      if (!/^[0-9A-Za-z-]{1,127}$/.test(certificateName)) {
        problems.push(
          `${p}:KeyVaultCertificateName '${certificateName}' is not a Key Vault certificate name`,
        );
        ok = false;
      }
      const id = get(flat, `${p}:ManagedIdentityClientId`);
      if (id && !isGuid(id)) {
        problems.push(`${p}:ManagedIdentityClientId '${id}' is not a GUID`);
        ok = false;
      }
      if (!ok) return undefined;
      return {
        index,
        sourceType,
        vaultUrl: vaultUrl.endsWith("/") ? vaultUrl : `${vaultUrl}/`,
        certificateName,
        ...(id ? { managedIdentityClientId: id } : {}),
      };
    }
    default:
      return undefined;
  }
}

/**
 * `AzureAd:Authority` (`https://login.microsoftonline.com/<tenant>/v2.0`, with or without `v2.0`) split
 * into the instance and the tenant, as Microsoft.Identity.Web does (pure). Undefined when it is not
 * such a URL.
 */
export function splitAuthority(authority: string): { instance: string; tenant: string } | undefined {
  let url: URL;
  try {
    url = new URL(authority);
  } catch {
    return undefined;
  }
  const segments = url.pathname.split("/").filter((s) => s !== "");
  if (segments.length === 0 || segments.length > 2 || (segments[1] && segments[1].toLowerCase() !== "v2.0"))
    return undefined;
  return { instance: `${url.origin}/`, tenant: segments[0]! };
}

/**
 * Instance and tenant from `Instance`/`TenantId`, or from `Authority` when those are absent. When both
 * styles are given, `Instance`/`TenantId` win and `Authority` is ignored with a warning, as in
 * Microsoft.Identity.Web (4.1.1, #3611/#3612).
 */
function instanceAndTenant(
  flat: FlatConfig,
  problems: string[],
  warnings: string[],
): { instance: string | undefined; tenant: string } {
  const instance = get(flat, "AzureAd:Instance") || undefined;
  const tenant = get(flat, "AzureAd:TenantId") ?? "";
  const authority = get(flat, "AzureAd:Authority");
  if (!authority) return { instance, tenant };
  if (instance || tenant) {
    warnings.push(
      "AzureAd:Authority is ignored because AzureAd:Instance or AzureAd:TenantId is set (Microsoft.Identity.Web's rule)",
    );
    return { instance, tenant };
  }
  const split = splitAuthority(authority);
  if (!split) {
    problems.push(
      `AzureAd:Authority '${authority}' is not an authority URL like https://login.microsoftonline.com/<tenant>/v2.0`,
    );
    return { instance, tenant };
  }
  return { instance: split.instance, tenant: split.tenant };
}

export function bindAzureAd(
  flat: FlatConfig,
  env: Environment,
  problems: string[],
  warnings: string[],
): AzureAdSection {
  const fromConfig = instanceAndTenant(flat, problems, warnings);
  let instance = fromConfig.instance || DEFAULT_INSTANCE;
  try {
    const url = new URL(instance);
    if (url.protocol !== "https:") problems.push(`AzureAd:Instance '${instance}' must be an https URL`);
    if (url.search || url.hash)
      problems.push(`AzureAd:Instance '${instance}' must not carry a query or fragment`);
    if (!instance.endsWith("/")) instance = `${instance}/`;
  } catch {
    problems.push(`AzureAd:Instance '${instance}' is not a URL`);
  }
  const tenantId = fromConfig.tenant;
  if (tenantId === "") problems.push("AzureAd:TenantId is missing");
  else if (tenantId.toLowerCase() === "consumers") {
    problems.push(
      "AzureAd:TenantId 'consumers': personal Microsoft accounts have no agent identities; use a tenant id, domain, or 'common'",
    );
  } else if (isMetaTenant(tenantId)) {
    warnings.push(
      `AzureAd:TenantId '${tenantId}': tokens on behalf of a user are requested in the user's tenant (the inbound token's tid); app, agent and agent-user tokens need a tenant (DownstreamApis:<name>:AcquireTokenOptions:Tenant or optionsOverride.AcquireTokenOptions.Tenant)`,
    );
  } else if (!isTenant(tenantId))
    problems.push(`AzureAd:TenantId '${tenantId}' is neither a GUID nor a domain`);
  const clientId = get(flat, "AzureAd:ClientId") ?? "";
  if (clientId === "") problems.push("AzureAd:ClientId is missing");
  else if (!isGuid(clientId)) problems.push(`AzureAd:ClientId '${clientId}' is not a GUID`);

  const audiences: string[] = [];
  const single = get(flat, "AzureAd:Audience");
  if (single) audiences.push(single);
  for (const i of children(flat, "AzureAd:Audiences")) {
    const v = get(flat, `AzureAd:Audiences:${i}`);
    if (v) audiences.push(v);
  }
  // Microsoft.Identity.Web's default: the client id (v2.0 tokens) or api://{ClientId} (v1.0 tokens).
  if (audiences.length === 0 && clientId) audiences.push(clientId, `api://${clientId}`);

  const credentials: CredentialSpec[] = [];
  const indices = children(flat, "AzureAd:ClientCredentials");
  for (const i of indices) {
    if (!/^\d+$/.test(i)) {
      problems.push(`AzureAd:ClientCredentials:${i}: credential entries must be numbered (0, 1, …)`);
      continue;
    }
    const spec = bindCredential(flat, Number(i), env, problems, warnings);
    if (spec) credentials.push(spec);
  }
  const legacySecret = get(flat, "AzureAd:ClientSecret");
  if (indices.length === 0 && legacySecret) {
    credentials.push({ index: 0, sourceType: "ClientSecret", clientSecret: legacySecret });
  }
  if (credentials.length === 0 && !problems.some((p) => p.startsWith("AzureAd:ClientCredentials"))) {
    warnings.push(
      "AzureAd:ClientCredentials is empty: only /Validate can answer (a validation-only deployment); every token request gets a 500 problem saying so",
    );
  }
  const validateScopes = get(flat, "AzureAd:Scopes")?.trim();
  return {
    instance,
    tenantId,
    clientId,
    audiences,
    credentials,
    ...(validateScopes ? { validateScopes } : {}),
  };
}
