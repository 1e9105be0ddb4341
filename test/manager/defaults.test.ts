import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/lib/command.ts";
import { isLoopback, parseBindAddress } from "../../src/manager/bind-address.ts";
import { leaseNamespaceFrom } from "../../src/manager/command.ts";
import { startMetricsServer } from "../../src/manager/health.ts";
import { createManagerMetrics } from "../../src/manager/metrics.ts";
import { bearerToken } from "../../src/manager/metrics-auth.ts";

describe("the manager's defaults from where it runs", () => {
  it("takes the lease namespace from the flag, else the namespace it runs in, else default", () => {
    expect(leaseNamespaceFrom("ops", "agentid-system")).toBe("ops");
    expect(leaseNamespaceFrom(undefined, "agentid-system")).toBe("agentid-system");
    expect(leaseNamespaceFrom("", "agentid-system")).toBe("agentid-system");
    expect(leaseNamespaceFrom(undefined, undefined)).toBe("default");
  });

  it.each([
    ["127.0.0.1:8080", { host: "127.0.0.1", port: 8080 }],
    ["0.0.0.0:8443", { host: "0.0.0.0", port: 8443 }],
    ["[::1]:9090", { host: "::1", port: 9090 }],
    ["localhost:0", { host: "localhost", port: 0 }],
  ])("reads the bind address %s", (text, address) => {
    expect(parseBindAddress(text)).toEqual(address);
  });

  it("turns /metrics off with 0 and refuses other text naming the flag", () => {
    expect(parseBindAddress("0")).toBeUndefined();
    for (const bad of ["8080", "host:", ":8080", "h:70000", "::1:80"])
      expect(() => parseBindAddress(bad)).toThrow(UsageError);
    expect(() => parseBindAddress("8080")).toThrow(/--metrics-bind-address/);
  });

  it.each([
    ["127.0.0.1", true],
    ["127.10.0.1", true],
    ["::1", true],
    ["localhost", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.1", false],
    ["manager.example", false],
  ])("%s is loopback: %s", (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });

  it("refuses to serve /metrics openly beyond loopback", async () => {
    await expect(
      startMetricsServer({ host: "0.0.0.0", port: 0, registry: createManagerMetrics().registry }),
    ).rejects.toThrow(/needs authentication/);
  });

  it.each([
    ["Bearer abc.def", "abc.def"],
    ["bearer abc", "abc"],
    ["Basic YTpi", undefined],
    ["Bearer", undefined],
    ["Bearer a b", undefined],
    [undefined, undefined],
  ])("reads the bearer token of %s", (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});
