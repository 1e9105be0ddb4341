import { generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOKEN_EXCHANGE_APP_ID } from "../../src/emulator/store.ts";
import {
  claimsOf,
  EXCHANGE_SCOPE,
  entraCode,
  type Harness,
  startHarness,
} from "../support/emulator/test-harness.ts";
import { callJson, IDS, testDirectory } from "../support/emulator/testing.ts";
import {
  EXCHANGE_AUDIENCE as AUDIENCE,
  type OidcIssuer,
  KUBE_SUBJECT as SUBJECT,
  startOidcIssuer,
} from "./oidc-issuer.ts";

/**
 * A real OIDC issuer over HTTPS with its own CA (as a local kube-apiserver has), a blueprint whose
 * federated identity credential trusts it, and assertions that each break one rule.
 */
let issuer: OidcIssuer;
let issuerUrl: string;
let h: Harness;

beforeAll(async () => {
  issuer = await startOidcIssuer();
  issuerUrl = issuer.url;
  const directory = testDirectory();
  withFic(directory);
  h = await startHarness({ directory, trustedCaPems: [issuer.caPem] });
});

afterAll(async () => {
  await h?.close();
  await issuer?.close();
});

const assertion = (...args: Parameters<OidcIssuer["sign"]>) => issuer.sign(...args);

function t1Request(clientAssertion: string) {
  return h.token({
    grant_type: "client_credentials",
    client_id: IDS.blueprint,
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: clientAssertion,
    scope: EXCHANGE_SCOPE,
    fmi_path: IDS.agent,
  });
}

describe("federated client assertions", () => {
  it("accepts an assertion that matches the federated credential and the issuer's keys", async () => {
    const r = await t1Request(await assertion());
    expect(r.status).toBe(200);
    // T1: the exchange app's GUID as aud (captures), not the audience the client asked for.
    expect(claimsOf(r.json.access_token)).toMatchObject({
      azp: IDS.blueprint,
      azpacr: "2",
      aud: TOKEN_EXCHANGE_APP_ID,
    });
  });

  it("refuses an assertion signed with another algorithm than RS256 (Entra supports RS256 only)", async () => {
    const es = await generateKeyPair("ES256");
    const token = await new SignJWT({ jti: crypto.randomUUID() })
      .setProtectedHeader({ alg: "ES256", kid: "issuer-key-1" })
      .setIssuer(issuer.url)
      .setSubject(SUBJECT)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(es.privateKey);
    const r = await t1Request(token);
    expect(r.status).toBe(400);
    expect(entraCode(r)).toBe(5002730);
  });

  it("accepts the same projected token again by default (workload identity clients reuse it)", async () => {
    const a = await assertion();
    expect((await t1Request(a)).status).toBe(200);
    expect((await t1Request(a)).status).toBe(200);
  });

  const now = () => Math.floor(Date.now() / 1000);
  it.each([
    ["another subject", () => assertion({ sub: "system:serviceaccount:agents:intruder" }), 700213],
    ["another audience", () => assertion({ aud: "https://kubernetes.default.svc" }), 700212],
    ["an unknown issuer", () => assertion({ iss: "https://issuer.invalid" }), 700211],
    ["an expired assertion", () => assertion({ exp: now() - 3600, nbf: now() - 7200 }), 700024],
    ["a not-yet-valid assertion", () => assertion({ nbf: now() + 3600, exp: now() + 7200 }), 700024],
    [
      "a signature by another key",
      async () => assertion({}, (await generateKeyPair("RS256")).privateKey),
      700027,
    ],
    [
      "a key id the issuer does not publish",
      async () => assertion({}, (await generateKeyPair("RS256")).privateKey, "k9"),
      700027,
    ],
    ["alg none", async () => unsigned(await assertion()), 5002730],
    ["HS256 keyed with the issuer's public key", async () => hmacWithPublicKey(await assertion()), 5002730],
  ])("rejects %s", async (_name, make, code) => {
    const r = await t1Request(await make());
    // A refusal of the request (Entra answers 400 or 401 with an AADSTS code), never a server error.
    expect([400, 401]).toContain(r.status);
    expect(entraCode(r)).toBe(code);
  });

  it("announces the private-CA trust it was started with: a test switch, Entra trusts public roots only", () => {
    expect(h.logLines.join("")).toMatch(
      /"level":"?(40|warn)"?.*test switch: federated issuers signed by private CAs are trusted/,
    );
  });

  it("logs why an assertion was rejected, never the assertion", async () => {
    const good = await assertion();
    const bad = await assertion({ sub: "system:serviceaccount:agents:intruder" });
    expect((await t1Request(good)).status).toBe(200);
    expect(entraCode(await t1Request(bad))).toBe(700213);
    const text = h.logLines.join("");
    expect(text).toContain("system:serviceaccount:agents:intruder");
    expect(text).toContain('"code":"AADSTS700213"');
    for (const a of [good, bad]) expect(text).not.toContain(a.split(".")[2]);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/);
  });

  it("rejects a replayed jti when replay protection is on", async () => {
    await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/settings`, {
      rejectReplayedAssertions: true,
    });
    try {
      const a = await assertion();
      expect((await t1Request(a)).status).toBe(200);
      const again = await t1Request(a);
      expect(again.status).toBe(401);
      expect(entraCode(again)).toBe(50013);
    } finally {
      await callJson(h.dispatcher, "POST", `${h.emulator.url}/_emulator/settings`, {
        rejectReplayedAssertions: false,
      });
    }
  });

  it("stops accepting the assertion once the federated credential is removed", async () => {
    const path = `${h.emulator.url}/_emulator/tenants/${IDS.tenant}/applications/${IDS.blueprint}/federatedIdentityCredentials`;
    expect((await callJson(h.dispatcher, "DELETE", `${path}/research-agent-sa`)).status).toBe(204);
    const r = await t1Request(await assertion());
    expect(entraCode(r)).toBe(700211);
    const fic = { name: "research-agent-sa", issuer: issuerUrl, subject: SUBJECT, audiences: [AUDIENCE] };
    expect((await callJson(h.dispatcher, "POST", path, fic)).status).toBe(201);
    expect((await t1Request(await assertion())).status).toBe(200);
  });

  it("accepts a managed identity's token as a federated credential, and no other Entra token", async () => {
    const admin = (method: string, path: string, body?: unknown) =>
      callJson(h.dispatcher, method, `${h.emulator.url}/_emulator/tenants/${IDS.tenant}${path}`, body);
    const miAppId = "5d6e7f80-9102-4a13-8b24-c35d46e57f68";
    const added = await admin("POST", "/applications", {
      appId: miAppId,
      kind: "managedIdentity",
      clientSecrets: [{ value: "imds-stand-in-secret" }],
    });
    expect(added.status).toBe(201);
    const exchangeToken = (clientId: string, secret: string) =>
      h.accessToken({
        grant_type: "client_credentials",
        client_id: clientId,
        client_secret: secret,
        scope: EXCHANGE_SCOPE,
      });
    const miToken = await exchangeToken(miAppId, "imds-stand-in-secret");
    const appToken = await exchangeToken(IDS.app, IDS.appSecret);
    const mi = claimsOf(miToken);
    expect(entraCode(await t1Request(miToken))).toBe(700211);
    const path = `/applications/${IDS.blueprint}/federatedIdentityCredentials`;
    const ficFor = (name: string, token: string) => {
      const c = claimsOf(token);
      return { name, issuer: String(c.iss), subject: String(c.sub), audiences: [AUDIENCE] };
    };
    expect((await admin("POST", path, ficFor("managed-identity", miToken))).status).toBe(201);
    expect((await admin("POST", path, ficFor("ordinary-app", appToken))).status).toBe(201);
    expect((await t1Request(miToken)).status).toBe(200);
    expect(mi.azp).toBe(miAppId);
    const appAttempt = await t1Request(appToken);
    expect(appAttempt.status).toBe(400);
    expect(entraCode(appAttempt)).toBe(700222);
    const [head, body] = miToken.split(".");
    expect(entraCode(await t1Request(`${head}.${body}.${"A".repeat(342)}`))).toBe(700027);
  });

  it("an issuerFetch fault fails the next fetches of the issuer's metadata with AADSTS50166, cached keys or not", async () => {
    // Keys cached by a first success: the fault still makes the next verifications fetch, and fail.
    expect((await t1Request(await assertion())).status).toBe(200);
    const faults = `${h.emulator.url}/_emulator/faults`;
    expect((await callJson(h.dispatcher, "POST", faults, { count: 2, kind: "issuerFetch" })).status).toBe(
      201,
    );
    for (let i = 0; i < 2; i++) {
      const r = await t1Request(await assertion());
      expect(r.status).toBe(400);
      expect(entraCode(r)).toBe(50166);
    }
    // Consumed: the issuer's metadata is fetched again and the assertion accepted.
    expect((await callJson(h.dispatcher, "GET", faults)).json).toEqual({ pending: [] });
    expect((await t1Request(await assertion())).status).toBe(200);
  });

  it("an issuerFetch fault is not consumed by token requests that fetch no issuer metadata", async () => {
    const faults = `${h.emulator.url}/_emulator/faults`;
    await callJson(h.dispatcher, "POST", faults, { count: 1, kind: "issuerFetch" });
    try {
      // A client secret needs no issuer: it succeeds and leaves the fault pending.
      await h.t1();
      expect((await callJson(h.dispatcher, "GET", faults)).json).toEqual({
        pending: [{ count: 1, kind: "issuerFetch" }],
      });
      expect(entraCode(await t1Request(await assertion()))).toBe(50166);
    } finally {
      await callJson(h.dispatcher, "DELETE", faults);
    }
  });

  it("fails with AADSTS50166 when the issuer's CA is not trusted", async () => {
    const directory = testDirectory();
    withFic(directory);
    const untrusting = await startHarness({ directory });
    try {
      const r = await untrusting.token({
        grant_type: "client_credentials",
        client_id: IDS.blueprint,
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: await assertion(),
        scope: EXCHANGE_SCOPE,
      });
      expect(r.status).toBe(400);
      expect(r.json.error).toBe("invalid_request");
      expect(entraCode(r)).toBe(50166);
    } finally {
      await untrusting.close();
    }
  });
});

function withFic(directory: ReturnType<typeof testDirectory>): void {
  const blueprint = directory.tenants[0]?.applications?.find((a) => a.appId === IDS.blueprint);
  if (!blueprint) throw new Error("the test directory has no blueprint");
  blueprint.federatedIdentityCredentials = [
    { name: "research-agent-sa", issuer: issuerUrl, subject: SUBJECT, audiences: [AUDIENCE] },
  ];
}

function unsigned(token: string): string {
  const [, payload] = token.split(".");
  return `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
}

async function hmacWithPublicKey(token: string): Promise<string> {
  const [, payload] = token.split(".");
  const header = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT", kid: "issuer-key-1" })).toString(
    "base64url",
  );
  const { createHmac } = await import("node:crypto");
  const sig = createHmac("sha256", issuer.publicPem).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${sig}`;
}
