import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEmulator, startEmulator } from "../../src/emulator/index.ts";
import { createLogger } from "../../src/lib/log.ts";
import { desiredFederatedCredential } from "../../src/operator/federation.ts";
import { createGraphClient, createGraphFederation, type GraphFederation } from "../../src/operator/graph.ts";
import { createGraphCredentialFactory } from "../../src/operator/graph-credential.ts";
import { OutboundFencedError, outboundDispatcher } from "../../src/operator/https.ts";

/** Graph mode's credential management against the emulator's Graph subset (real HTTPS, real tokens). */
const TENANT = "4d3c2b1a-0f9e-4d8c-b7a6-554433221100";
const BLUEPRINT = "1a2b3c4d-5e6f-4a0b-8c1d-2e3f4a5b6c7d";
const OPERATOR = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f";
const ISSUER = "https://issuer.example/cluster";
let emu: RunningEmulator;
let graph: GraphFederation;

beforeAll(async () => {
  emu = await startEmulator({
    port: 0,
    logger: createLogger({ name: "emulator", level: "silent" }),
    directory: {
      tenants: [
        {
          id: TENANT,
          applications: [
            { appId: BLUEPRINT, kind: "agentIdentityBlueprint" },
            { appId: OPERATOR, clientSecrets: [{ value: "operator-secret" }] },
          ],
          resources: [
            {
              appId: "00000003-0000-0000-c000-000000000000",
              identifierUris: ["https://graph.microsoft.com"],
              audience: "https://graph.microsoft.com",
              appRoles: ["AgentIdentityBlueprint.AddRemoveCreds.All"],
            },
          ],
          grants: [
            {
              type: "application",
              clientAppId: OPERATOR,
              resource: "https://graph.microsoft.com",
              roles: ["AgentIdentityBlueprint.AddRemoveCreds.All"],
            },
          ],
        },
      ],
    },
  });
  const secretFile = join(mkdtempSync(join(tmpdir(), "agentid-graph-test-")), "secret");
  writeFileSync(secretFile, "operator-secret\n");
  graph = createGraphFederation({
    baseUrl: emu.url,
    credentialFor: createGraphCredentialFactory({
      clientId: OPERATOR,
      clientSecretFile: secretFile,
      authorityHost: emu.url,
      caPems: [emu.caPem],
    }),
    dispatcher: outboundDispatcher([emu.caPem]),
  });
});
afterAll(() => emu?.close());

async function admin(method: "POST" | "DELETE", path: string, body?: unknown): Promise<void> {
  const agent = new Agent({ connect: { ca: emu.caPem } });
  try {
    const res = await request(
      `${emu.url}/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials${path}`,
      {
        method,
        dispatcher: agent,
        headers: body ? { "content-type": "application/json" } : {},
        body: body ? JSON.stringify(body) : null,
      },
    );
    await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode}`);
  } finally {
    await agent.close();
  }
}

describe("Graph federation", () => {
  it("creates the credential once, then finds it up to date", async () => {
    const desired = desiredFederatedCredential("ns", "created", ISSUER);
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "CredentialCreated",
    });
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "CredentialUpToDate",
    });
    expect(await graph.remove(TENANT, BLUEPRINT, desired.name)).toMatchObject({
      ok: true,
      reason: "CredentialRemoved",
    });
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "CredentialCreated",
    });
  });

  it("leaves an equivalent credential under another name alone", async () => {
    const desired = desiredFederatedCredential("ns", "equivalent", ISSUER);
    await admin("POST", "", {
      name: "made-by-hand",
      issuer: desired.issuer,
      subject: desired.subject,
      audiences: desired.audiences,
    });
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "EquivalentCredentialExists",
    });
  });

  it("replaces its own credential whose audience drifted", async () => {
    const desired = desiredFederatedCredential("ns", "drifted", ISSUER);
    await admin("POST", "", {
      name: desired.name,
      issuer: desired.issuer,
      subject: desired.subject,
      audiences: ["api://something-else"],
    });
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "CredentialUpdated",
    });
    expect(await graph.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({
      ok: true,
      reason: "CredentialUpToDate",
    });
  });

  it("treats removing an absent credential as done, and an unknown blueprint as a condition", async () => {
    expect(await graph.remove(TENANT, BLUEPRINT, "never-existed")).toMatchObject({ ok: true });
    const outcome = await graph.ensure(
      TENANT,
      "00000000-0000-4000-8000-000000000000",
      desiredFederatedCredential("ns", "x", ISSUER),
    );
    expect(outcome).toMatchObject({ ok: false, reason: "BlueprintNotFoundInGraph" });
  });

  it("reports a manager credential Entra refuses without leaking anything", async () => {
    const secretFile = join(mkdtempSync(join(tmpdir(), "agentid-graph-test-")), "secret");
    writeFileSync(secretFile, "wrong-secret-value");
    const wrong = createGraphFederation({
      baseUrl: emu.url,
      credentialFor: createGraphCredentialFactory({
        clientId: OPERATOR,
        clientSecretFile: secretFile,
        authorityHost: emu.url,
        caPems: [emu.caPem],
      }),
      dispatcher: outboundDispatcher([emu.caPem]),
    });
    const outcome = await wrong.ensure(TENANT, BLUEPRINT, desiredFederatedCredential("ns", "y", ISSUER));
    expect(outcome).toMatchObject({ ok: false, reason: "GraphAccessDenied" });
    expect(JSON.stringify(outcome)).not.toContain("wrong-secret-value");
    expect(JSON.stringify(outcome)).toContain("AADSTS7000215");
  });
  it("asks for no token once its term has ended: the token request is not behind the fenced dispatcher", async () => {
    const secretFile = join(mkdtempSync(join(tmpdir(), "agentid-graph-test-")), "secret");
    writeFileSync(secretFile, "operator-secret\n");
    const credentials = createGraphCredentialFactory({
      clientId: OPERATOR,
      clientSecretFile: secretFile,
      authorityHost: emu.url,
      caPems: [emu.caPem],
    });
    let tokenRequests = 0;
    const term = new AbortController();
    const fence = () => term.signal;
    const fenced = createGraphClient({
      baseUrl: emu.url,
      credentialFor: (tenantId) => {
        const credential = credentials(tenantId);
        return {
          getToken: (scopes, options) => {
            tokenRequests += 1;
            return credential.getToken(scopes, options);
          },
        };
      },
      dispatcher: outboundDispatcher([emu.caPem], { fence }),
      fence,
    });
    const desired = desiredFederatedCredential("ns", "fenced", ISSUER);
    expect(await fenced.federation.ensure(TENANT, BLUEPRINT, desired)).toMatchObject({ ok: true });
    const asked = tokenRequests;
    expect(asked).toBeGreaterThan(0);
    term.abort();
    const outcome = await fenced.federation.ensure(
      TENANT,
      BLUEPRINT,
      desiredFederatedCredential("ns", "after", ISSUER),
    );
    expect(outcome).toMatchObject({ ok: false });
    expect(JSON.stringify(outcome)).toContain(new OutboundFencedError(new URL(emu.url).origin).message);
    expect(tokenRequests).toBe(asked);
  });
});
