import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DirectorySpec } from "../../src/emulator/directory.ts";
import { baseEnv, call, type Emu, IDS, startEmu, startTestSidecar, type TestSidecar } from "./harness.ts";

/**
 * The sidecar's inbound validation against the token shapes Entra really issues to a web API: v1 tokens
 * (issuer https://sts.windows.net/<tid>/, `aud` the identifier the client asked for, or the app id with the
 * `use_guid` optional claim) as well as v2 ones, with facet claims in any order. The blueprint here asks
 * for v1 tokens, Entra's default for an API that sets no version.
 */
let emu: Emu;
let sidecar: TestSidecar;

beforeAll(async () => {
  emu = await startEmu();
  const directory = await emu.admin<DirectorySpec>("GET", "directory");
  const blueprint = directory.tenants[0]?.applications?.find((a) => a.appId === IDS.blueprint);
  if (!blueprint) throw new Error("the test directory has no blueprint");
  blueprint.requestedAccessTokenVersion = 1;
  await emu.admin("PUT", "directory", directory);
  sidecar = await startTestSidecar(emu, baseEnv(emu));
});
afterAll(async () => {
  await sidecar?.close();
  await emu?.close();
});

const validate = (token: string) =>
  call(`${sidecar.url}/Validate`, { headers: { authorization: `Bearer ${token}` } });

describe("inbound tokens as Entra shapes them", () => {
  it("accepts a v1 token for api://<client id> (issuer sts.windows.net)", async () => {
    const token = await emu.userToken({ audience: `api://${IDS.blueprint}` });
    const r = await validate(token);
    expect(r.status, r.text).toBe(200);
    expect(r.json.claims).toMatchObject({
      ver: "1.0",
      iss: `https://sts.windows.net/${IDS.tenant}/`,
      aud: `api://${IDS.blueprint}`,
      oid: IDS.user,
    });
  });

  it("accepts a v1 token whose aud is the client id", async () => {
    const r = await validate(await emu.userToken({ audience: IDS.blueprint }));
    expect(r.status, r.text).toBe(200);
    expect(r.json.claims).toMatchObject({ ver: "1.0", aud: IDS.blueprint });
  });

  it("refuses a v1 token for another API", async () => {
    const r = await validate(await emu.userToken({ audience: "api://contoso-weather" }));
    expect(r.status).toBe(401);
  });
});
