import { Agent, fetch } from "undici";
import type { DirectorySpec } from "../../../src/emulator/directory.ts";
import type { RunningEmulator } from "../../../src/emulator/index.ts";

/**
 * Helpers for tests that talk to a running emulator (this component's and other components'): the ids
 * of a small directory, and HTTPS calls that trust the emulator's CA.
 */
export const IDS = {
  tenant: "415a225c-58fe-4f1a-b44d-e994a7645ffc",
  domain: "contoso.onmicrosoft.com",
  blueprint: "635df336-7566-4df6-891b-db8a571aea8e",
  blueprintSecret: "dev-blueprint-secret-change-me",
  agent: "81c1b0a3-5f1f-4ddc-ac16-58eb49066eab",
  otherBlueprint: "4db8dc7d-788b-4265-a9cd-1fdd1ad68d5c",
  otherAgent: "1f6d3c1e-0b51-4b54-9f0e-3c1f1a2b3c4d",
  agentUser: "8add6678-74a0-445c-aaa4-370e99e1340b",
  agentUserUpn: "research-agent@contoso.onmicrosoft.com",
  user: "734692fe-5f53-4369-a696-594d8fb2836b",
  userUpn: "alice@contoso.onmicrosoft.com",
  app: "0cd328c8-361d-425e-ab37-4ba79aaa8ca7",
  appSecret: "dev-operator-secret-change-me",
  graph: "00000003-0000-0000-c000-000000000000",
  weather: "20088ae2-6c9c-4562-985f-70cce773e605",
} as const;

/** The directory of examples/directory.yaml plus a second blueprint with its own agent (for mismatch cases). */
export function testDirectory(): DirectorySpec {
  return {
    tenants: [
      {
        id: IDS.tenant,
        domains: [IDS.domain],
        applications: [
          {
            appId: IDS.blueprint,
            displayName: "Contoso Agent Blueprint",
            kind: "agentIdentityBlueprint",
            identifierUris: [`api://${IDS.blueprint}`],
            scopes: ["access_as_user"],
            clientSecrets: [{ value: IDS.blueprintSecret }],
          },
          {
            appId: IDS.otherBlueprint,
            displayName: "Other Blueprint",
            kind: "agentIdentityBlueprint",
            clientSecrets: [{ value: "other-blueprint-secret" }],
          },
          { appId: IDS.app, displayName: "Contoso operator", clientSecrets: [{ value: IDS.appSecret }] },
        ],
        agentIdentities: [
          { appId: IDS.agent, displayName: "Research Agent", blueprintAppId: IDS.blueprint },
          { appId: IDS.otherAgent, displayName: "Other Agent", blueprintAppId: IDS.otherBlueprint },
        ],
        agentUsers: [
          { objectId: IDS.agentUser, userPrincipalName: IDS.agentUserUpn, agentIdentityAppId: IDS.agent },
        ],
        users: [{ objectId: IDS.user, userPrincipalName: IDS.userUpn, displayName: "Alice" }],
        resources: [
          {
            appId: IDS.graph,
            displayName: "Microsoft Graph",
            identifierUris: ["https://graph.microsoft.com"],
            audience: "https://graph.microsoft.com",
            appRoles: ["User.Read.All", "Application.ReadWrite.All", "Mail.Send"],
            scopes: ["User.Read", "Mail.Read", "Mail.Send"],
          },
          {
            appId: IDS.weather,
            displayName: "Contoso Weather API",
            identifierUris: ["api://contoso-weather"],
            appRoles: ["Forecast.Read"],
            scopes: ["Forecast.Read"],
            // A v2 API beside Graph's and the blueprint's v1 (Entra's default), so both shapes are exercised.
            requestedAccessTokenVersion: 2,
          },
        ],
        grants: [
          {
            type: "application",
            clientAppId: IDS.agent,
            resource: "https://graph.microsoft.com",
            roles: ["User.Read.All"],
          },
          {
            type: "application",
            clientAppId: IDS.agent,
            resource: "api://contoso-weather",
            roles: ["Forecast.Read"],
          },
          {
            type: "application",
            clientAppId: IDS.app,
            resource: IDS.graph,
            roles: ["Application.ReadWrite.All"],
          },
          {
            type: "delegated",
            clientAppId: IDS.agent,
            resource: "https://graph.microsoft.com",
            scopes: ["User.Read", "Mail.Read"],
          },
          {
            type: "delegated",
            clientAppId: IDS.blueprint,
            resource: "api://contoso-weather",
            scopes: ["Forecast.Read"],
          },
          {
            type: "delegated",
            clientAppId: IDS.agent,
            resource: "https://graph.microsoft.com",
            scopes: ["Mail.Send"],
            principalId: IDS.agentUser,
          },
        ],
      },
    ],
  };
}

export interface HttpResult {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

/** An undici dispatcher that trusts the emulator's CA (close it after the test). */
export function trustingAgent(emulator: Pick<RunningEmulator, "caPem">): Agent {
  return new Agent({ connect: { ca: emulator.caPem } });
}

export async function postForm(
  dispatcher: Agent,
  url: string,
  params: Record<string, string | undefined>,
): Promise<HttpResult> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) body.set(k, v);
  const response = await fetch(url, {
    method: "POST",
    body: body.toString(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
    dispatcher,
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers as unknown as Headers,
    json: text ? JSON.parse(text) : {},
  };
}

export async function callJson(
  dispatcher: Agent,
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const response = await fetch(url, {
    method,
    dispatcher,
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers as unknown as Headers,
    json: text ? JSON.parse(text) : {},
  };
}
