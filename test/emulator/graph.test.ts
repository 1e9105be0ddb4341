import { beforeAll, describe, expect, it } from "vitest";
import { useHarness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";

const h = useHarness();
let operatorToken: string;
let blueprintObjectId: string;

beforeAll(async () => {
  operatorToken = await h.accessToken({
    grant_type: "client_credentials",
    client_id: IDS.app,
    client_secret: IDS.appSecret,
    scope: "https://graph.microsoft.com/.default",
  });
  const dir = (await callJson(h.dispatcher, "GET", `${h.emulator.url}/_emulator/directory`)).json as {
    tenants: { applications: { appId: string; objectId: string }[] }[];
  };
  blueprintObjectId = dir.tenants[0]?.applications.find((a) => a.appId === IDS.blueprint)?.objectId ?? "";
});

const graph = (method: string, path: string, token: string | undefined, body?: unknown) =>
  callJson(
    h.dispatcher,
    method,
    `${h.emulator.url}${path}`,
    body,
    token ? { authorization: `Bearer ${token}` } : {},
  );

const fic = (name: string, subject = `system:serviceaccount:agents:${name}`) => ({
  name,
  issuer: "https://oidc.example.com/cluster-1",
  subject,
  audiences: ["api://AzureADTokenExchange"],
});

describe("Graph federatedIdentityCredentials", () => {
  it("creates, lists, reads and deletes, by object id and by appId", async () => {
    const base = `/v1.0/applications/${blueprintObjectId}/federatedIdentityCredentials`;
    const created = await graph("POST", base, operatorToken, fic("research-agent"));
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      ...fic("research-agent"),
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(String(created.json["@odata.context"])).toContain("federatedIdentityCredentials");

    const byAppId = await graph(
      "GET",
      `/beta/applications(appId='${IDS.blueprint}')/federatedIdentityCredentials`,
      operatorToken,
    );
    expect(byAppId.status).toBe(200);
    expect((byAppId.json.value as { name: string }[]).map((f) => f.name)).toContain("research-agent");

    const encoded = `/v1.0/applications%28appId=%27${IDS.blueprint}%27%29/federatedIdentityCredentials/research-agent`;
    expect((await graph("GET", encoded, operatorToken)).json.name).toBe("research-agent");
    const one = await graph("GET", `${base}/${String(created.json.id)}`, operatorToken);
    expect(one.json.subject).toBe("system:serviceaccount:agents:research-agent");

    expect((await graph("DELETE", `${base}/${String(created.json.id)}`, operatorToken)).status).toBe(204);
    const gone = await graph("DELETE", `${base}/${String(created.json.id)}`, operatorToken);
    expect(gone.status).toBe(404);
    expect(gone.json).toMatchObject({ error: { code: "Request_ResourceNotFound" } });
  });

  it("refuses a duplicate name or an invalid credential with Graph's error shape", async () => {
    const base = `/v1.0/applications/${blueprintObjectId}/federatedIdentityCredentials`;
    expect((await graph("POST", base, operatorToken, fic("dupe-name"))).status).toBe(201);
    const dupe = await graph("POST", base, operatorToken, fic("dupe-name", "other-subject"));
    expect(dupe.status).toBe(400);
    expect(dupe.json).toMatchObject({ error: { code: "Request_BadRequest" } });
    const bad = await graph("POST", base, operatorToken, {
      ...fic("bad-issuer"),
      issuer: "http://plain.example",
    });
    expect(bad.status).toBe(400);
    await graph("DELETE", `${base}/dupe-name`, operatorToken);
  });

  it("enforces the limit of 20 credentials per application", async () => {
    const base = `/v1.0/applications(appId='${IDS.otherBlueprint}')/federatedIdentityCredentials`;
    for (let i = 0; i < 20; i++) {
      expect((await graph("POST", base, operatorToken, fic(`limit-${i}`))).status).toBe(201);
    }
    const over = await graph("POST", base, operatorToken, fic("limit-20"));
    expect(over.status).toBe(400);
    expect(String((over.json.error as { message: string }).message)).toContain("20");
  });

  it("answers 404 for an unknown application", async () => {
    const r = await graph(
      "GET",
      "/v1.0/applications/3f2504e0-4f89-41d3-9a0c-0305e82c3399/federatedIdentityCredentials",
      operatorToken,
    );
    expect(r.status).toBe(404);
  });

  it("requires a valid Graph token with an application-management role", async () => {
    const base = `/v1.0/applications/${blueprintObjectId}/federatedIdentityCredentials`;
    expect((await graph("GET", base, undefined)).status).toBe(401);
    expect((await graph("GET", base, "not.a.token")).status).toBe(401);
    const weatherToken = await h.accessToken({
      grant_type: "client_credentials",
      client_id: IDS.app,
      client_secret: IDS.appSecret,
      scope: "api://contoso-weather/.default",
    });
    expect((await graph("GET", base, weatherToken)).json).toMatchObject({
      error: { code: "InvalidAuthenticationToken" },
    });
    const agentToken = await h.accessToken(h.agentParams(await h.t1()));
    const denied = await graph("POST", base, agentToken, fic("not-allowed"));
    expect(denied.status).toBe(403);
    expect(denied.json).toMatchObject({ error: { code: "Authorization_RequestDenied" } });
  });
});
