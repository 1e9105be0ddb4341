import { DEFAULT_LISTEN, type ListenAddress } from "./types.ts";

/**
 * Turns an ASP.NET Core URL (`http://+:5000`, `http://localhost:5000`, `http://[::1]:8080`) into a
 * host and port for Node. Kestrel's wildcards (`+`, `*`) mean every interface.
 */
export function parseListenUrl(url: string): ListenAddress | string {
  const match = /^(https?):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/i.exec(url.trim());
  if (!match) return `'${url}' is not a URL like http://127.0.0.1:5000`;
  const [, scheme, rawHost, rawPort] = match;
  if (scheme?.toLowerCase() === "https") {
    return `'${url}': https endpoints are not supported; the sidecar serves plain HTTP on loopback`;
  }
  const port = rawPort === undefined ? 80 : Number(rawPort);
  if (port > 65535) return `'${url}': port ${port} is out of range`;
  let host = (rawHost ?? "").replace(/^\[|\]$/g, "");
  if (host === "+" || host === "*") host = "0.0.0.0";
  else if (host.toLowerCase() === "localhost") host = "127.0.0.1";
  return { host, port };
}

export interface ListenSources {
  kestrelUrl?: string;
  aspnetcoreUrls?: string;
  aspnetcoreHttpPorts?: string;
}

/** Kestrel endpoint first, then ASPNETCORE_URLS, then ASPNETCORE_HTTP_PORTS, else 127.0.0.1:5000. */
export function resolveListen(sources: ListenSources, problems: string[], warnings: string[]): ListenAddress {
  const pick = (name: string, list: string): string | undefined => {
    const parts = list
      .split(";")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (parts.length > 1)
      warnings.push(`${name} lists ${parts.length} addresses; the sidecar listens on the first only`);
    return parts[0];
  };
  const fromUrl = (name: string, url: string): ListenAddress => {
    const parsed = parseListenUrl(url);
    if (typeof parsed === "string") {
      problems.push(`${name}: ${parsed}`);
      return DEFAULT_LISTEN;
    }
    return parsed;
  };
  if (sources.kestrelUrl) return fromUrl("Kestrel:Endpoints:Http:Url", sources.kestrelUrl);
  if (sources.aspnetcoreUrls) {
    const first = pick("ASPNETCORE_URLS", sources.aspnetcoreUrls);
    if (first) return fromUrl("ASPNETCORE_URLS", first);
  }
  if (sources.aspnetcoreHttpPorts) {
    const first = pick("ASPNETCORE_HTTP_PORTS", sources.aspnetcoreHttpPorts);
    if (first !== undefined) {
      if (!/^\d+$/.test(first) || Number(first) > 65535) {
        problems.push(`ASPNETCORE_HTTP_PORTS: '${first}' is not a port number`);
        return DEFAULT_LISTEN;
      }
      return { host: "0.0.0.0", port: Number(first) };
    }
  }
  return DEFAULT_LISTEN;
}
