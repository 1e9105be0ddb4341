import { describe, expect, it } from "vitest";
import { authorityAllowed, authorityHostOf } from "../../src/api/cloud.ts";
import { blueprint } from "../support/api-fixtures.ts";

describe("the blueprint's authority host", () => {
  it.each([
    ["AzurePublic", "https://login.microsoftonline.com/"],
    ["AzureUSGovernment", "https://login.microsoftonline.us/"],
    ["AzureChina", "https://login.chinacloudapi.cn/"],
  ] as const)("%s is fixed by the cloud", (cloud, host) => {
    expect(authorityHostOf(blueprint({ cloud }))).toBe(host);
    expect(authorityAllowed(blueprint({ cloud }), [])).toBe(true);
  });

  it("Custom uses its own host, normalized with one trailing slash", () => {
    expect(authorityHostOf(blueprint({ cloud: "Custom", authorityHost: "https://login.test:8443" }))).toBe(
      "https://login.test:8443/",
    );
  });

  it("Custom is allowed only when the manager's allow-list has exactly that host", () => {
    const bp = blueprint({ cloud: "Custom", authorityHost: "https://login.test/" });
    expect(authorityAllowed(bp, [])).toBe(false);
    expect(authorityAllowed(bp, ["https://login.test"])).toBe(true);
    expect(authorityAllowed(bp, ["https://login.test.evil/"])).toBe(false);
    expect(authorityAllowed(bp, ["https://other.test/", "https://login.test/"])).toBe(true);
    const evil = blueprint({ cloud: "Custom", authorityHost: "https://login.test.evil/" });
    expect(authorityAllowed(evil, ["https://login.test/"])).toBe(false);
    const userinfo = blueprint({ cloud: "Custom", authorityHost: "https://login.test@evil.test/" });
    expect(authorityAllowed(userinfo, ["https://login.test/"])).toBe(false);
    const port = blueprint({ cloud: "Custom", authorityHost: "https://login.test:444/" });
    expect(authorityAllowed(port, ["https://login.test/"])).toBe(false);
  });
});
