import { isLoopback } from "./loopback.ts";

/**
 * Host-header filtering against DNS rebinding: a page on evil.example that gets its name re-pointed at
 * 127.0.0.1 makes the browser send `Host: evil.example` to the sidecar, which must not answer it. Only
 * `localhost`, loopback addresses and the names configured in `AllowedHosts` pass (pure).
 */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.indexOf(":");
  // More than one colon without brackets is not a valid Host; keep it whole so that it fails.
  if (colon >= 0 && h.indexOf(":", colon + 1) < 0) return h.slice(0, colon);
  return h;
}

export function hostAllowed(header: string | undefined, names: ReadonlySet<string>): boolean {
  // HTTP/1.0 requests may have no Host; nothing can be rebound without one (ASP.NET allows them too).
  if (header === undefined || header === "") return true;
  let name = hostName(header);
  if (name.endsWith(".")) name = name.slice(0, -1);
  // isLoopback counts "no address" as local (a Unix socket peer); an empty Host name is no such thing.
  if (name === "") return false;
  if (name === "localhost" || isLoopback(name) || names.has(name)) return true;
  // `*.example.com` in AllowedHosts: any subdomain (not example.com itself), as ASP.NET matches it.
  for (let dot = name.indexOf("."); dot >= 0; dot = name.indexOf(".", dot + 1))
    if (names.has(`*${name.slice(dot)}`)) return true;
  return false;
}

/**
 * Remembers the decision per Host header value, so the hot path pays one Map lookup; bounded, since the
 * values come from callers.
 */
export class HostFilter {
  readonly #names: ReadonlySet<string>;
  readonly #seen = new Map<string, boolean>();
  constructor(names: Iterable<string>) {
    this.#names = new Set([...names].map((n) => n.toLowerCase()));
  }
  allows(header: string | undefined): boolean {
    if (header === undefined) return true;
    let ok = this.#seen.get(header);
    if (ok === undefined) {
      ok = hostAllowed(header, this.#names);
      if (this.#seen.size >= 256) this.#seen.clear();
      this.#seen.set(header, ok);
    }
    return ok;
  }
}
