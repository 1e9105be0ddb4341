import { generateKeyPairSync } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { normalizeDirectory } from "../../src/emulator/directory-validate.ts";
import { TOKEN_EXCHANGE_APP_ID } from "../../src/emulator/store.ts";
import {
  ASSERTION_TYPE,
  claimsOf,
  directoryErrorOf,
  EXCHANGE_SCOPE,
  entraCode,
  useHarness,
} from "../support/emulator/test-harness.ts";
import { callJson, IDS, testDirectory } from "../support/emulator/testing.ts";
import {
  signAssertion,
  type TestCertificate,
  testCertificate,
  testEcCertificate,
} from "../support/emulator/testing-certificates.ts";

/** Certificate credentials: an app's own client assertion signed with a certificate registered on it. */
const h = useHarness();
let registered: TestCertificate;
let unregistered: TestCertificate;
let blueprintCert: TestCertificate;

const keysPath = (app: string) => `/_emulator/tenants/${IDS.tenant}/applications/${app}/keyCredentials`;
const admin = (method: string, path: string, body?: unknown) =>
  callJson(h.dispatcher, method, `${h.emulator.url}${path}`, body);

beforeAll(async () => {
  [registered, unregistered, blueprintCert] = await Promise.all([
    testCertificate("operator app"),
    testCertificate("someone else"),
    testCertificate("blueprint"),
  ]);
  expect((await admin("POST", keysPath(IDS.app), { key: registered.certPem })).status).toBe(201);
  expect((await admin("POST", keysPath(IDS.blueprint), { key: blueprintCert.certPem })).status).toBe(201);
});

function params(
  assertion: string,
  clientId: string = IDS.app,
  scope = "https://graph.microsoft.com/.default",
) {
  return {
    grant_type: "client_credentials",
    client_id: clientId,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: assertion,
    scope,
  };
}

const tokenEndpoint = () => h.tokenUrl;

describe("client_credentials with a certificate", () => {
  it.each([
    ["PS256 with x5t#S256 (msal-node, Learn's current format)", "PS256" as const],
    ["RS256 with x5t (SHA-1, the older format)", "RS256" as const],
  ])("accepts %s", async (_name, alg) => {
    const assertion = await signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint(), alg });
    const r = await h.token(params(assertion));
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(claimsOf(r.json.access_token)).toMatchObject({
      appid: IDS.app,
      appidacr: "2",
      idtyp: "app",
      roles: ["Application.ReadWrite.All"],
    });
  });

  it.each([
    ["the v1 token endpoint", (base: string) => `${base}/${IDS.tenant}/oauth2/token`],
    ["the tenant's domain, in another case", (base: string) => `${base}/${IDS.domain}/oauth2/V2.0/token`],
  ])("accepts %s as the audience", async (_name, audience) => {
    const assertion = await signAssertion(registered, {
      clientId: IDS.app,
      audience: audience(h.emulator.url),
    });
    expect((await h.token(params(assertion))).status).toBe(200);
  });

  it("accepts an x5c header without using it (no subject-name/issuer trust)", async () => {
    const x5c = [registered.certPem.replace(/-----[A-Z ]+-----|\s/g, "")];
    const ok = await signAssertion(registered, {
      clientId: IDS.app,
      audience: tokenEndpoint(),
      header: { "x5t#S256": registered.x5tS256, x5c },
    });
    expect((await h.token(params(ok))).status).toBe(200);
    // An unregistered certificate in x5c does not make it trusted (no subject-name/issuer trust).
    const other = await signAssertion(unregistered, {
      clientId: IDS.app,
      audience: tokenEndpoint(),
      header: {
        "x5t#S256": unregistered.x5tS256,
        x5c: [unregistered.certPem.replace(/-----[A-Z ]+-----|\s/g, "")],
      },
    });
    expect(entraCode(await h.token(params(other)))).toBe(700027);
  });

  it("lets a blueprint get T1 with its certificate, which its agent exchanges", async () => {
    const assertion = await signAssertion(blueprintCert, {
      clientId: IDS.blueprint,
      audience: tokenEndpoint(),
    });
    const t1 = await h.accessToken({
      ...params(assertion, IDS.blueprint, EXCHANGE_SCOPE),
      fmi_path: IDS.agent,
    });
    expect(claimsOf(t1)).toMatchObject({
      aud: TOKEN_EXCHANGE_APP_ID,
      azp: IDS.blueprint,
      azpacr: "2",
    });
    const agent = claimsOf(await h.accessToken(h.agentParams(t1)));
    expect(agent).toMatchObject({ appid: IDS.agent, xms_par_app_azp: IDS.blueprint });
  });
});

describe("rejections", () => {
  const cases: [string, () => Promise<string>, number, string, number, RegExp][] = [
    [
      "a certificate that is not registered on the app",
      () => signAssertion(unregistered, { clientId: IDS.app, audience: tokenEndpoint() }),
      401,
      "invalid_client",
      700027,
      /not registered on application\. \[Reason - The key was not found\., Thumbprint of key used by client: '[0-9A-F]{64}'/,
    ],
    [
      "a signature by another key under the registered thumbprint",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          audience: tokenEndpoint(),
          signingKey: unregistered.privateKey,
        }),
      401,
      "invalid_client",
      700027,
      /Reason - Key was found, but use of the key to verify the signature failed\..*Found key 'Start=\d\d\/\d\d\/\d{4} /,
    ],
    [
      "the issuer URL as the audience",
      () =>
        signAssertion(registered, { clientId: IDS.app, audience: `${h.emulator.url}/${IDS.tenant}/v2.0` }),
      401,
      "invalid_client",
      700023,
      /Client assertion audience claim does not match Realm issuer/,
    ],
    [
      "the common endpoint as the audience",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          audience: `${h.emulator.url}/common/oauth2/v2.0/token`,
        }),
      401,
      "invalid_client",
      700023,
      /Realm issuer/,
    ],
    [
      "another host's token endpoint as the audience",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          audience: `https://login.microsoftonline.com/${IDS.tenant}/oauth2/v2.0/token`,
        }),
      401,
      "invalid_client",
      700023,
      /Realm issuer/,
    ],
    [
      "another app as issuer and subject",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          issuer: IDS.blueprint,
          subject: IDS.blueprint,
          audience: tokenEndpoint(),
        }),
      401,
      "invalid_client",
      700021,
      /doesn't match 'client_id' parameter/,
    ],
    [
      "a subject that is not the issuer",
      () =>
        signAssertion(registered, { clientId: IDS.app, subject: IDS.blueprint, audience: tokenEndpoint() }),
      401,
      "invalid_client",
      50048,
      /Subject must match the issuer claim/,
    ],
    [
      "no thumbprint in the header",
      () => signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint(), header: {} }),
      400,
      "invalid_request",
      50027,
      /No certificate thumbprint specified in token header/,
    ],
    [
      "an empty x5c header",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          audience: tokenEndpoint(),
          header: { "x5t#S256": registered.x5tS256, x5c: [] },
        }),
      400,
      "invalid_request",
      50027,
      /x5c header must be a non-empty array/,
    ],
    [
      "an x5c whose first certificate is not the thumbprint's",
      () =>
        signAssertion(registered, {
          clientId: IDS.app,
          audience: tokenEndpoint(),
          header: {
            "x5t#S256": registered.x5tS256,
            x5c: [unregistered.certPem.replace(/-----[A-Z ]+-----|\s/g, "")],
          },
        }),
      400,
      "invalid_request",
      50027,
      /first x5c certificate is not the one/,
    ],
    [
      "no jti",
      () => signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint(), jti: null }),
      400,
      "invalid_request",
      50027,
      /'jti'/,
    ],
    [
      "RS384",
      () => signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint(), alg: "RS384" }),
      400,
      "invalid_request",
      5002730,
      /RS384/,
    ],
    [
      "an expired assertion",
      () => signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint(), expiresIn: -3600 }),
      401,
      "invalid_client",
      700024,
      /not within its valid time range/,
    ],
  ];

  it.each(cases)("refuses %s", async (_name, make, status, error, code, description) => {
    const assertion = await make();
    const r = await h.token(params(assertion));
    expect(r.status).toBe(status);
    expect(r.json.error).toBe(error);
    expect(entraCode(r)).toBe(code);
    expect(String(r.json.error_description)).toMatch(description);
    expect(String(r.json.error_description)).not.toContain(assertion.split(".")[2]);
    const logs = h.logLines.join("");
    expect(logs).toContain(`"code":"AADSTS${code}"`);
    expect(logs).not.toContain(assertion.split(".")[2]);
    expect(logs).not.toContain("PRIVATE KEY");
  });

  it.each([
    ["ended", { startDateTime: "2020-01-01T00:00:00Z", endDateTime: "2021-01-01T00:00:00Z" }],
    ["not yet started", { startDateTime: "2099-01-01T00:00:00Z", endDateTime: "2100-01-01T00:00:00Z" }],
  ])("refuses a key credential whose validity window has %s", async (_name, window) => {
    const cert = await testCertificate(`window ${_name}`);
    const added = await admin("POST", keysPath(IDS.app), { key: cert.certPem, ...window });
    expect(added.status).toBe(201);
    const r = await h.token(
      params(await signAssertion(cert, { clientId: IDS.app, audience: tokenEndpoint() })),
    );
    expect(r.status).toBe(401);
    expect(entraCode(r)).toBe(700027);
    expect(String(r.json.error_description)).toMatch(/\[Reason - The key used is expired\./);
    expect((await admin("DELETE", `${keysPath(IDS.app)}/${String(added.json.keyId)}`)).status).toBe(204);
  });

  it("refuses a certificate assertion for an agent identity, which has no credentials of its own", async () => {
    const assertion = await signAssertion(registered, { clientId: IDS.agent, audience: tokenEndpoint() });
    const r = await h.token({ ...params(assertion, IDS.agent) });
    expect(r.status).toBe(401);
    expect(r.json.error).toBe("invalid_client");
  });

  it("refuses replays when replay protection is on", async () => {
    await admin("POST", "/_emulator/settings", { rejectReplayedAssertions: true });
    try {
      const assertion = await signAssertion(registered, { clientId: IDS.app, audience: tokenEndpoint() });
      expect((await h.token(params(assertion))).status).toBe(200);
      expect(entraCode(await h.token(params(assertion)))).toBe(50013);
    } finally {
      await admin("POST", "/_emulator/settings", { rejectReplayedAssertions: false });
    }
  });
});

describe("key credentials in the directory and the admin API", () => {
  it("answers a registered certificate as Graph does, and removes it by thumbprint", async () => {
    const cert = await testCertificate("admin api");
    const r = await admin("POST", keysPath(IDS.app), { key: cert.certPem, displayName: "ci" });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({
      customKeyIdentifier: cert.sha1,
      displayName: "ci",
      type: "AsymmetricX509Cert",
      usage: "Verify",
    });
    expect(r.json.keyId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(String(r.json.endDateTime))).toBeGreaterThan(Date.now());
    expect((await admin("POST", keysPath(IDS.app), { key: cert.certPem })).status).toBe(400);
    const assertion = () => signAssertion(cert, { clientId: IDS.app, audience: tokenEndpoint() });
    expect((await h.token(params(await assertion()))).status).toBe(200);
    expect((await admin("DELETE", `${keysPath(IDS.app)}/${cert.sha1.toLowerCase()}`)).status).toBe(204);
    expect((await admin("DELETE", `${keysPath(IDS.app)}/${cert.sha1}`)).status).toBe(404);
    expect(entraCode(await h.token(params(await assertion())))).toBe(700027);
  });

  it("refuses a private key, a non-certificate and a bad window, naming the problem", async () => {
    const withKey = await admin("POST", keysPath(IDS.app), {
      key: `${registered.certPem}\n${registered.keyPem}`,
    });
    expect(withKey.status).toBe(400);
    expect(String(withKey.json.detail)).toContain("holds a private key");
    const junk = await admin("POST", keysPath(IDS.app), { key: "not a certificate" });
    expect(String(junk.json.detail)).toContain("is not an X.509 certificate");
    const window = await admin("POST", keysPath(IDS.app), {
      key: unregistered.certPem,
      startDateTime: "2030-01-01T00:00:00Z",
      endDateTime: "2029-01-01T00:00:00Z",
    });
    expect(String(window.json.detail)).toContain("endDateTime: must be after startDateTime");
    const ec = await admin("POST", keysPath(IDS.app), { key: (await testEcCertificate()).certPem });
    expect(ec.status).toBe(400);
    expect(String(ec.json.detail)).toContain("only RSA certificates are accepted");
    expect(
      (await admin("POST", keysPath("9b1c6f0e-2f43-4d4c-9d1e-8f0c2a6b7e11"), { key: registered.certPem }))
        .status,
    ).toBe(400);
  });

  it("validates keyCredentials in a directory file with their paths, and accepts base64 DER", () => {
    const dir = testDirectory();
    const app = dir.tenants[0]?.applications?.[2];
    if (!app) throw new Error("fixture");
    const der = registered.certPem.replace(/-----[A-Z ]+-----|\s/g, "");
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    app.keyCredentials = [
      { key: der },
      { key: der },
      { key: "x" },
      { key: ec.privateKey.export({ format: "pem", type: "pkcs8" }).toString() },
    ];
    const message = directoryErrorOf(dir);
    expect(message).toContain("tenants[0].applications[2].keyCredentials[1].key: certificate");
    expect(message).toContain("is registered twice");
    expect(message).toContain(
      "tenants[0].applications[2].keyCredentials[2].key: is not an X.509 certificate",
    );
    expect(message).toContain("tenants[0].applications[2].keyCredentials[3].key: holds a private key");
    app.keyCredentials = [{ key: der }];
    const stored = normalizeDirectory(dir).tenants[0]?.applications?.[2]?.keyCredentials?.[0];
    expect(stored?.customKeyIdentifier).toBe(registered.sha1);
  });
});
