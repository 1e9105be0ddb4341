import { describe, expect, it } from "vitest";
import { HostFilter, hostAllowed, hostName } from "../../src/sidecar/hosts.ts";

describe("Host filtering (DNS rebinding)", () => {
  const none = new Set<string>();
  it("accepts localhost and loopback addresses, with or without a port", () => {
    for (const h of [
      "localhost",
      "LOCALHOST:5000",
      "localhost.",
      "127.0.0.1",
      "127.0.0.1:5000",
      "127.8.9.10",
      "[::1]",
      "[::1]:5000",
    ])
      expect(hostAllowed(h, none), h).toBe(true);
    expect(hostAllowed(undefined, none)).toBe(true);
  });

  it("refuses any other name or address, and malformed values", () => {
    for (const h of [
      "evil.example",
      "evil.example:5000",
      "localhost.evil.example",
      "10.0.0.1:5000",
      "[::2]",
      ":5000",
      "[",
      "127.0.0.1.evil.example",
    ])
      expect(hostAllowed(h, none), h).toBe(false);
  });

  it("accepts the configured names, and subdomains for *.name", () => {
    const names = new Set(["sidecar", "*.svc.example"]);
    expect(hostAllowed("sidecar:5000", names)).toBe(true);
    expect(hostAllowed("SIDECAR", names)).toBe(true);
    expect(hostAllowed("a.svc.example", names)).toBe(true);
    expect(hostAllowed("a.b.svc.example:80", names)).toBe(true);
    expect(hostAllowed("svc.example", names)).toBe(false);
    expect(hostAllowed("sidecar.evil.example", names)).toBe(false);
  });

  it("splits host and port", () => {
    expect(hostName("[::1]:80")).toBe("::1");
    expect(hostName("Example:80")).toBe("example");
  });

  it("remembers decisions, within a bound", () => {
    const f = new HostFilter(["Sidecar"]);
    expect(f.allows("sidecar:5000")).toBe(true);
    for (let i = 0; i < 1000; i++) expect(f.allows(`h${i}.example`)).toBe(false);
    expect(f.allows("sidecar:5000")).toBe(true);
  });
});
