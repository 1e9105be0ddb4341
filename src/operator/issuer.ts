import type { KubeClient } from "../kube/client.ts";

/**
 * The cluster's service-account issuer, from the API server's OIDC discovery document
 * (/.well-known/openid-configuration, readable through the system:service-account-issuer-discovery role).
 * An explicit override wins; a discovered value is cached and refreshed now and then.
 */
export interface IssuerSource {
  get(): Promise<string>;
}

export interface IssuerOptions {
  kube: KubeClient;
  override?: string;
  refreshMs?: number;
  now?: () => number;
}

export function parseIssuer(document: unknown): string {
  const issuer = (document as { issuer?: unknown } | undefined)?.issuer;
  if (typeof issuer !== "string" || issuer === "")
    throw new Error("the API server's OIDC discovery document has no issuer");
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new Error(`the API server's issuer ${JSON.stringify(issuer)} is not a URL`);
  }
  if (url.protocol !== "https:") {
    throw new Error(
      `the API server's issuer ${issuer} is not https; Entra only trusts https issuers (set --issuer or spec.federation.issuer)`,
    );
  }
  return issuer;
}

export function createIssuerSource(options: IssuerOptions): IssuerSource {
  const refreshMs = options.refreshMs ?? 3600_000;
  const now = options.now ?? Date.now;
  let cached: { issuer: string; at: number } | undefined;
  let inflight: Promise<string> | undefined;
  return {
    async get() {
      if (options.override) return options.override;
      if (cached && now() - cached.at < refreshMs) return cached.issuer;
      inflight ??= options.kube
        .get<unknown>("/.well-known/openid-configuration")
        .then((doc) => {
          const issuer = parseIssuer(doc);
          cached = { issuer, at: now() };
          return issuer;
        })
        .finally(() => {
          inflight = undefined;
        });
      try {
        return await inflight;
      } catch (error) {
        // Keep serving the last good answer while the API server hiccups.
        if (cached) return cached.issuer;
        throw error;
      }
    },
  };
}
