import type { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEmulator, startEmulator } from "../../src/emulator/index.ts";
import { createLogger } from "../../src/lib/log.ts";
import { callJson, postForm, trustingAgent } from "../support/emulator/testing.ts";

/**
 * Graph's authorization as the operator meets it: Application.ReadWrite.OwnedBy reaches only the
 * applications the caller owns, and agent identities are created and deleted with the Agent ID
 * permissions (Create.All / DeleteRestore.All for any blueprint, CreateAsManager for the caller's own).
 */
const TENANT = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const OWNED = "11aa22bb-33cc-44dd-85ee-66ff77aa88bb";
const NOT_OWNED = "22bb33cc-44dd-45ee-86ff-77aa88bb99cc";
const OWNER = "33cc44dd-55ee-46ff-87aa-88bb99cc00dd";
const CREATOR = "44dd55ee-66ff-47aa-88bb-99cc00dd11ee";
const NOBODY = "55ee66ff-77aa-48bb-89cc-00dd11ee22ff";
const READER = "66ff77aa-88bb-49cc-8add-11ee22ff33aa";
const GRAPH = "https://graph.microsoft.com";
const SECRET = "secret-for-tests-only";

let emu: RunningEmulator;
let dispatcher: Agent;

beforeAll(async () => {
  const app = (appId: string, extra: Record<string, unknown> = {}) => ({
    appId,
    clientSecrets: [{ value: SECRET }],
    ...extra,
  });
  const grant = (clientAppId: string, roles: string[]) => ({
    type: "application" as const,
    clientAppId,
    resource: GRAPH,
    roles,
  });
  emu = await startEmulator({
    port: 0,
    logger: createLogger({ name: "emulator", level: "silent" }),
    directory: {
      tenants: [
        {
          id: TENANT,
          applications: [
            app(OWNED, { kind: "agentIdentityBlueprint", owners: [OWNER] }),
            app(NOT_OWNED, { kind: "agentIdentityBlueprint" }),
            app(OWNER),
            app(CREATOR),
            app(NOBODY),
            app(READER),
          ],
          resources: [
            {
              appId: "00000003-0000-0000-c000-000000000000",
              identifierUris: [GRAPH],
              audience: GRAPH,
              appRoles: [
                "Application.ReadWrite.OwnedBy",
                "AgentIdentity.Create.All",
                "AgentIdentity.DeleteRestore.All",
                "AgentIdentity.CreateAsManager",
                "AgentIdentity.Read.All",
                "Application.Read.All",
              ],
            },
          ],
          grants: [
            grant(OWNER, ["Application.ReadWrite.OwnedBy"]),
            grant(CREATOR, ["AgentIdentity.Create.All", "AgentIdentity.DeleteRestore.All"]),
            grant(OWNED, ["AgentIdentity.CreateAsManager"]),
            grant(NOBODY, ["Application.Read.All"]),
            grant(READER, ["AgentIdentity.Read.All"]),
          ],
        },
      ],
    },
  });
  dispatcher = trustingAgent(emu);
});
afterAll(async () => {
  await dispatcher?.close();
  await emu?.close();
});

async function tokenOf(clientId: string): Promise<string> {
  const answer = await postForm(dispatcher, `${emu.url}/${TENANT}/oauth2/v2.0/token`, {
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: SECRET,
    scope: `${GRAPH}/.default`,
  });
  expect(answer.status).toBe(200);
  return String(answer.json.access_token);
}

const graph = async (method: string, path: string, as: string, body?: unknown) =>
  callJson(dispatcher, method, `${emu.url}${path}`, body, { authorization: `Bearer ${await tokenOf(as)}` });

const fic = (name: string) => ({
  name,
  issuer: "https://issuer.example/",
  subject: `system:serviceaccount:ns:${name}`,
  audiences: ["api://AzureADTokenExchange"],
});

describe("Application.ReadWrite.OwnedBy", () => {
  it("writes federated credentials of an owned application only", async () => {
    const owned = `/beta/applications(appId='${OWNED}')/federatedIdentityCredentials`;
    const notOwned = `/beta/applications(appId='${NOT_OWNED}')/federatedIdentityCredentials`;
    expect((await graph("POST", owned, OWNER, fic("mine"))).status).toBe(201);
    expect((await graph("GET", owned, OWNER)).status).toBe(200);
    const denied = await graph("POST", notOwned, OWNER, fic("theirs"));
    expect(denied.status).toBe(403);
    expect(denied.json).toMatchObject({
      error: {
        code: "Authorization_RequestDenied",
        message: "Insufficient privileges to complete the operation.",
      },
    });
    expect((await graph("GET", notOwned, OWNER)).status).toBe(403);
    expect((await graph("DELETE", `${owned}/mine`, OWNER)).status).toBe(204);
  });

  it("lets Application.Read.All read but not write", async () => {
    const path = `/beta/applications(appId='${NOT_OWNED}')/federatedIdentityCredentials`;
    expect((await graph("GET", path, NOBODY)).status).toBe(200);
    expect((await graph("POST", path, NOBODY, fic("nope"))).status).toBe(403);
  });
});

describe("agent identities", () => {
  const create = "/beta/servicePrincipals/microsoft.graph.agentIdentity";

  it("creates an agent under a blueprint with AgentIdentity.Create.All, usable at once, and deletes it", async () => {
    const created = await graph("POST", create, CREATOR, {
      displayName: "Research agent",
      agentIdentityBlueprintId: NOT_OWNED,
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      "@odata.type": "#microsoft.graph.agentIdentity",
      displayName: "Research agent",
      agentIdentityBlueprintId: NOT_OWNED,
      servicePrincipalType: "ServiceIdentity",
      appId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    const id = String(created.json.id);
    const agentAppId = String(created.json.appId);
    // The blueprint can get the exchange token for its new agent (fmi_path) right away.
    const t1 = await postForm(dispatcher, `${emu.url}/${TENANT}/oauth2/v2.0/token`, {
      grant_type: "client_credentials",
      client_id: NOT_OWNED,
      client_secret: SECRET,
      scope: "api://AzureADTokenExchange/.default",
      fmi_path: agentAppId,
    });
    expect(t1.status).toBe(200);

    expect((await graph("GET", `/beta/servicePrincipals/${id}`, CREATOR)).status).toBe(403);
    expect((await graph("DELETE", `/beta/servicePrincipals/${id}`, NOBODY)).status).toBe(403);
    expect((await graph("DELETE", `/beta/servicePrincipals/${id}`, CREATOR)).status).toBe(204);
    const again = await graph("DELETE", `/beta/servicePrincipals/${id}`, CREATOR);
    expect(again.status).toBe(404);
    expect(again.json).toMatchObject({ error: { code: "Request_ResourceNotFound" } });
  });

  it("lets a blueprint with AgentIdentity.CreateAsManager create and delete its own agents only", async () => {
    const own = await graph("POST", create, OWNED, { displayName: "Own", agentIdentityBlueprintId: OWNED });
    expect(own.status).toBe(201);
    const other = await graph("POST", create, OWNED, {
      displayName: "Other",
      agentIdentityBlueprintId: NOT_OWNED,
    });
    expect(other.status).toBe(403);
    expect(other.json).toMatchObject({ error: { code: "Authorization_RequestDenied" } });
    const foreign = await graph("POST", create, CREATOR, {
      displayName: "F",
      agentIdentityBlueprintId: NOT_OWNED,
    });
    expect((await graph("DELETE", `/beta/servicePrincipals/${String(foreign.json.id)}`, OWNED)).status).toBe(
      403,
    );
    expect((await graph("DELETE", `/beta/servicePrincipals/${String(own.json.id)}`, OWNED)).status).toBe(204);
  });

  it("refuses creation without the permission, without a display name, or for an app that is not a blueprint", async () => {
    expect(
      (await graph("POST", create, NOBODY, { displayName: "x", agentIdentityBlueprintId: OWNED })).status,
    ).toBe(403);
    expect(
      (await graph("POST", create, OWNER, { displayName: "x", agentIdentityBlueprintId: OWNED })).status,
    ).toBe(403);
    const noName = await graph("POST", create, CREATOR, { agentIdentityBlueprintId: OWNED });
    expect(noName.status).toBe(400);
    expect(noName.json).toMatchObject({ error: { code: "Request_BadRequest" } });
    const notBlueprint = await graph("POST", create, CREATOR, {
      displayName: "x",
      agentIdentityBlueprintId: OWNER,
    });
    expect(notBlueprint.status).toBe(400);
  });

  it("lists agents by a tag with Graph's lambda filter, and refuses other filters with Graph's errors", async () => {
    const marker = `agentid.io/agentidentity-uid:${crypto.randomUUID()}`;
    const tagged = await graph("POST", create, CREATOR, {
      displayName: "Tagged",
      agentIdentityBlueprintId: NOT_OWNED,
      tags: [marker],
    });
    expect(tagged.status).toBe(201);
    expect(tagged.json).toMatchObject({ tags: [marker] });
    await graph("POST", create, CREATOR, { displayName: "Untagged", agentIdentityBlueprintId: NOT_OWNED });
    const byTag = (tag: string) =>
      `${create}?$filter=${encodeURIComponent(`tags/any(t:t eq '${tag.replaceAll("'", "''")}')`)}`;
    const found = await graph("GET", byTag(marker), READER);
    expect(found.status).toBe(200);
    expect((found.json.value as Array<{ id: string }>).map((a) => a.id)).toEqual([tagged.json.id]);
    // Graph compares the value case-insensitively; another value finds nothing.
    expect((await graph("GET", byTag(marker.toUpperCase()), READER)).json.value).toHaveLength(1);
    expect((await graph("GET", byTag(`${marker}x`), READER)).json.value).toEqual([]);
    // Without a filter: every agent the caller may read.
    expect((await graph("GET", create, READER)).json.value).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: tagged.json.id })]),
    );

    // Only AgentIdentity.Read.All (or more) lists every agent; CreateAsManager its own blueprints' only.
    expect((await graph("GET", byTag(marker), CREATOR)).status).toBe(403);
    expect((await graph("GET", byTag(marker), OWNER)).json).toMatchObject({
      error: { code: "Authorization_RequestDenied" },
    });
    const asBlueprint = await graph("GET", byTag(marker), OWNED);
    expect(asBlueprint.status).toBe(200);
    expect(asBlueprint.json.value).toEqual([]);

    const other = await graph(
      "GET",
      `${create}?$filter=${encodeURIComponent("displayName eq 'Tagged'")}`,
      READER,
    );
    expect(other.status).toBe(400);
    expect(other.json).toMatchObject({
      error: {
        code: "Request_UnsupportedQuery",
        message:
          "Unsupported or invalid query filter clause specified for property 'displayName' of resource 'ServicePrincipal'.",
      },
    });
    const broken = await graph(
      "GET",
      `${create}?$filter=${encodeURIComponent("tags/any(t:t eq 'x'")}`,
      READER,
    );
    expect(broken.status).toBe(400);
    expect(broken.json).toMatchObject({ error: { code: "BadRequest" } });
    const badTags = await graph("POST", create, CREATOR, {
      displayName: "x",
      agentIdentityBlueprintId: NOT_OWNED,
      tags: "not-a-list",
    });
    expect(badTags.status).toBe(400);
  });

  it("counts every emulated request, and only those", async () => {
    await callJson(dispatcher, "POST", `${emu.url}/_emulator/counters/reset`);
    await graph("GET", `/beta/applications(appId='${OWNED}')/federatedIdentityCredentials`, OWNER);
    const counters = (await callJson(dispatcher, "GET", `${emu.url}/_emulator/counters`)).json as {
      requests: { total: number; byRoute: Record<string, number> };
    };
    expect(counters.requests.total).toBe(2); // the token request and the Graph call
    expect(counters.requests.byRoute[`POST /${TENANT}/oauth2/v2.0/token`]).toBe(1);
  });
});
