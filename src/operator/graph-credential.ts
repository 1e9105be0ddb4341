import { readFile } from "node:fs/promises";
import { rootCertificates } from "node:tls";
import { ClientAssertionCredential, ClientSecretCredential, type TokenCredential } from "@azure/identity";

/**
 * The manager's own credential for Graph mode, one per tenant: a workload-identity token file (the
 * normal case in a cluster) or, for development, a client secret read from a file.
 */
export interface GraphCredentialOptions {
  clientId: string;
  tokenFile?: string;
  clientSecretFile?: string;
  authorityHost?: string;
  caPems?: readonly string[];
}

export function createGraphCredentialFactory(
  options: GraphCredentialOptions,
): (tenantId: string) => TokenCredential {
  if (!options.tokenFile && !options.clientSecretFile) {
    throw new Error("Graph mode needs --graph-token-file (workload identity) or --graph-client-secret-file");
  }
  const common = {
    authorityHost: options.authorityHost ?? "https://login.microsoftonline.com",
    // Custom authority hosts (sovereign clouds, the local emulator) are trusted as given.
    disableInstanceDiscovery: true,
    ...(options.caPems && options.caPems.length > 0
      ? { tlsOptions: { ca: [...rootCertificates, ...options.caPems] } }
      : {}),
  };
  const byTenant = new Map<string, TokenCredential>();
  let secret: Promise<string> | undefined;
  return (tenantId) => {
    let credential = byTenant.get(tenantId);
    if (credential) return credential;
    if (options.tokenFile) {
      const file = options.tokenFile;
      // Re-read on every token request: Kubernetes rotates the projected token in place.
      credential = new ClientAssertionCredential(
        tenantId,
        options.clientId,
        async () => (await readFile(file, "utf8")).trim(),
        common,
      );
    } else {
      secret ??= readFile(options.clientSecretFile ?? "", "utf8").then((s) => s.trim());
      const lazy: TokenCredential = {
        async getToken(scopes, getTokenOptions) {
          const inner = new ClientSecretCredential(
            tenantId,
            options.clientId,
            await (secret as Promise<string>),
            common,
          );
          byTenant.set(tenantId, inner);
          return inner.getToken(scopes, getTokenOptions);
        },
      };
      credential = lazy;
    }
    byTenant.set(tenantId, credential);
    return credential;
  };
}

/**
 * Signs in as a blueprint (agentCreation.credential Blueprint, for AgentIdentity.CreateAsManager) with the
 * manager's own projected token as the client assertion: the blueprint needs a federated credential that
 * trusts the manager's ServiceAccount. The authority host is the blueprint's (already checked against
 * --allowed-authority-hosts by the caller).
 */
export function createBlueprintCredentialFactory(options: {
  tokenFile: string;
  caPems?: readonly string[];
}): (tenantId: string, clientId: string, authorityHost: string) => TokenCredential {
  const cache = new Map<string, TokenCredential>();
  return (tenantId, clientId, authorityHost) => {
    const key = `${tenantId}\n${clientId}\n${authorityHost}`;
    let credential = cache.get(key);
    if (!credential) {
      const file = options.tokenFile;
      credential = new ClientAssertionCredential(
        tenantId,
        clientId,
        async () => (await readFile(file, "utf8")).trim(),
        {
          authorityHost,
          disableInstanceDiscovery: true,
          ...(options.caPems && options.caPems.length > 0
            ? { tlsOptions: { ca: [...rootCertificates, ...options.caPems] } }
            : {}),
        },
      );
      cache.set(key, credential);
    }
    return credential;
  };
}
