import type { AgentIdentityBlueprint, Cloud } from "./types.ts";

/**
 * Entra's clouds: the authority host (token service) and Microsoft Graph of each. A blueprint names its
 * cloud; only `Custom` carries a host of its own, and the manager uses that host only when its
 * --allowed-authority-hosts lists it, so no object can point the manager or a sidecar at a host of its
 * author's choosing.
 */
export const CLOUDS: Readonly<Record<Exclude<Cloud, "Custom">, { authorityHost: string; graph: string }>> = {
  AzurePublic: { authorityHost: "https://login.microsoftonline.com/", graph: "https://graph.microsoft.com" },
  AzureUSGovernment: {
    authorityHost: "https://login.microsoftonline.us/",
    graph: "https://graph.microsoft.us",
  },
  AzureChina: {
    authorityHost: "https://login.chinacloudapi.cn/",
    graph: "https://microsoftgraph.chinacloudapi.cn",
  },
};

/** An authority host with exactly one trailing slash, as AzureAd__Instance wants it. */
export function normalizeAuthorityHost(host: string): string {
  return `${host.replace(/\/+$/, "")}/`;
}

/** The authority host a blueprint names (its cloud's, or its own for Custom), normalized. */
export function authorityHostOf(blueprint: AgentIdentityBlueprint): string {
  const cloud = blueprint.spec.cloud ?? "AzurePublic";
  if (cloud === "Custom") return normalizeAuthorityHost(blueprint.spec.authorityHost ?? "");
  return CLOUDS[cloud].authorityHost;
}

/**
 * Whether the manager may use this blueprint's authority host: the named clouds always, a Custom host only
 * when the allow-list (the manager's --allowed-authority-hosts) has it. Compared as normalized URLs
 * (scheme, host, port, path), so `https://a/` and `https://a` are the same host and `https://a.evil` is not.
 */
export function authorityAllowed(blueprint: AgentIdentityBlueprint, allowed: readonly string[]): boolean {
  if ((blueprint.spec.cloud ?? "AzurePublic") !== "Custom") return true;
  const host = canonicalUrl(blueprint.spec.authorityHost);
  return host !== undefined && allowed.some((a) => canonicalUrl(a) === host);
}

function canonicalUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value);
    if (url.protocol !== "https:" || url.username || url.password || url.search || url.hash) return undefined;
    return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
  } catch {
    return undefined;
  }
}

/** Microsoft Graph's base URL for a blueprint's cloud; Custom clouds use the manager's --graph-url. */
export function graphUrlOf(
  blueprint: AgentIdentityBlueprint,
  customGraphUrl: string | undefined,
): string | undefined {
  const cloud = blueprint.spec.cloud ?? "AzurePublic";
  return cloud === "Custom" ? customGraphUrl : CLOUDS[cloud].graph;
}
