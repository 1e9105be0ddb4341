import { describe, expect, it } from "vitest";
import { useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";

const h = useHarness();

describe("v1.0 discovery", () => {
  it("publishes the v1 issuer and the tenant's keys at Entra's v1 paths, by id or domain", async () => {
    const byDomain = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/${IDS.domain}/.well-known/openid-configuration`,
    );
    expect(byDomain.json).toMatchObject({
      issuer: `https://sts.windows.net/${IDS.tenant}/`,
      jwks_uri: `${h.emulator.url}/${IDS.tenant}/discovery/keys`,
    });
    const v1Keys = await callJson(h.dispatcher, "GET", String(byDomain.json.jwks_uri));
    const v2Keys = await callJson(h.dispatcher, "GET", `${h.emulator.url}/${IDS.tenant}/discovery/v2.0/keys`);
    const kids = (r: typeof v1Keys) => (r.json.keys as { kid: string }[]).map((k) => k.kid);
    expect(kids(v1Keys)).toEqual(kids(v2Keys));
    const unknown = await callJson(
      h.dispatcher,
      "GET",
      `${h.emulator.url}/nope.example/.well-known/openid-configuration`,
    );
    expect(unknown.status).toBe(400);
  });
});
