import { beforeAll, describe, expect, it } from "vitest";
import { claimsOf, useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";

/** The emulator's Key Vault subset: Key Vault's challenge, its token checks, its error bodies. */
const h = useHarness();
const secretUrl = (name: string, apiVersion = "7.4") =>
  `${h.emulator.url}/keyvault/vault1/secrets/${name}${apiVersion ? `?api-version=${apiVersion}` : ""}`;

beforeAll(async () => {
  await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/resources`, {
    appId: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
    displayName: "Azure Key Vault",
    identifierUris: ["https://vault.azure.net"],
    audience: "https://vault.azure.net",
  });
});

const appToken = (scope: string) =>
  h.accessToken({
    grant_type: "client_credentials",
    client_id: IDS.app,
    client_secret: IDS.appSecret,
    scope,
  });

describe("Key Vault subset", () => {
  it("challenges, checks the token's audience and the reader, and answers Key Vault's shapes", async () => {
    const vaultToken = await appToken("https://vault.azure.net/.default");
    const oid = String(claimsOf(vaultToken).oid);
    const put = await callJson(
      h.dispatcher,
      "PUT",
      `${h.emulator.url}/_emulator/keyvault/vault1/secrets/cert1`,
      {
        tenant: IDS.tenant,
        value: "c2VjcmV0",
        contentType: "application/x-pkcs12",
        readers: [oid],
      },
    );
    expect(put.status).toBe(204);

    const challenge = await callJson(h.dispatcher, "GET", secretUrl("cert1"));
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get("www-authenticate")).toBe(
      `Bearer authorization="${h.emulator.url}/${IDS.tenant}", resource="https://vault.azure.net"`,
    );
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
    const ok = await callJson(h.dispatcher, "GET", secretUrl("cert1"), undefined, bearer(vaultToken));
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ value: "c2VjcmV0", contentType: "application/x-pkcs12", managed: true });

    const graphToken = await appToken("https://graph.microsoft.com/.default");
    const wrongAudience = await callJson(
      h.dispatcher,
      "GET",
      secretUrl("cert1"),
      undefined,
      bearer(graphToken),
    );
    expect([wrongAudience.status, (wrongAudience.json.error as { code: string }).code]).toEqual([
      401,
      "Unauthorized",
    ]);
    const missing = await callJson(h.dispatcher, "GET", secretUrl("nope"), undefined, bearer(vaultToken));
    expect([missing.status, (missing.json.error as { code: string }).code]).toEqual([404, "SecretNotFound"]);
    const noVersion = await callJson(
      h.dispatcher,
      "GET",
      secretUrl("cert1", ""),
      undefined,
      bearer(vaultToken),
    );
    expect(noVersion.status).toBe(400);

    await callJson(h.dispatcher, "PUT", `${h.emulator.url}/_emulator/keyvault/vault1/secrets/cert2`, {
      tenant: IDS.tenant,
      value: "x",
      readers: ["00000000-0000-0000-0000-000000000001"],
    });
    const forbidden = await callJson(h.dispatcher, "GET", secretUrl("cert2"), undefined, bearer(vaultToken));
    expect([forbidden.status, (forbidden.json.error as { code: string }).code]).toEqual([403, "Forbidden"]);
    const forged = `${vaultToken.split(".").slice(0, 2).join(".")}.AAAA`;
    expect((await callJson(h.dispatcher, "GET", secretUrl("cert1"), undefined, bearer(forged))).status).toBe(
      401,
    );
  });
});
