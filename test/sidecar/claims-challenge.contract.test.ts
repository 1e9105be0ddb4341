import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  baseEnv,
  call,
  claimsOf,
  type Emu,
  IDS,
  startEmu,
  startTestSidecar,
  type TestSidecar,
} from "./harness.ts";

/**
 * Conditional Access refusals reach the sidecar as Entra sends them: AADSTS50076/50079,
 * `interaction_required`, a `claims` value (Learn's OBO error response). The emulator injects them
 * (`POST /_emulator/faults {kind: "claimsChallenge"}`); the sidecar must refuse the caller with Entra's
 * message, keep no token, and work again once Entra does.
 */
let emu: Emu;
let sidecar: TestSidecar;

beforeAll(async () => {
  emu = await startEmu();
  sidecar = await startTestSidecar(
    emu,
    baseEnv(emu, { DownstreamApis__graph__Scopes: "https://graph.microsoft.com/User.Read" }),
  );
});
afterAll(async () => {
  await sidecar?.close();
  await emu?.close();
});

describe("claims challenges from Entra", () => {
  it.each([50076, 50079])(
    "answers an agent's OBO refused with AADSTS%i as a 401 with Entra's message, then recovers",
    async (code) => {
      await emu.admin("POST", "faults", {
        count: 1,
        kind: "claimsChallenge",
        code,
        grant: "on_behalf_of",
        clientId: IDS.agent,
      });
      const user = await emu.userToken();
      const url = `${sidecar.url}/AuthorizationHeader/graph?AgentIdentity=${IDS.agent}`;
      const refused = await call(url, { headers: { authorization: `Bearer ${user}` } });
      expect(refused.status, refused.text).toBe(401);
      expect(refused.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(String(refused.json.detail)).toContain(`AADSTS${code}`);
      expect(refused.text).not.toContain(user);
      // The fault was for one request: the next one gets a token (nothing bad was cached).
      const ok = await call(url, { headers: { authorization: `Bearer ${user}` } });
      expect(ok.status, ok.text).toBe(200);
      expect(claimsOf(ok)).toMatchObject({ oid: IDS.user, appid: IDS.agent });
    },
  );
});
