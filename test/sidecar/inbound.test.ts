import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InboundValidator, InvalidTokenError, issuerMatches } from "../../src/sidecar/inbound.ts";
import { createOutbound } from "../../src/sidecar/outbound.ts";

/**
 * The accepted issuers come from the authority's metadata: the v2.0 document for v2 tokens and the
 * v1.0 document for v1 tokens, whose issuer differs by cloud. A sovereign-cloud authority (here one
 * whose v1 issuer is sts.chinacloudapi.cn) must accept its own v1 issuer and not the global one.
 */
const TENANT = "415a225c-58fe-4f1a-b44d-e994a7645ffc";
const CLIENT = "635df336-7566-4df6-891b-db8a571aea8e";
const V1_ISSUER = `https://sts.chinacloudapi.cn/${TENANT}/`;
let server: Server;
let base: string;
let privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
const outbound = createOutbound();

beforeAll(async () => {
  const pair = await generateKeyPair("RS256");
  privateKey = pair.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  server = createServer((req, res) => {
    const docs: Record<string, unknown> = {
      [`/${TENANT}/v2.0/.well-known/openid-configuration`]: {
        issuer: `${base}/${TENANT}/v2.0`,
        jwks_uri: `${base}/${TENANT}/discovery/v2.0/keys`,
      },
      [`/${TENANT}/.well-known/openid-configuration`]: {
        issuer: V1_ISSUER,
        jwks_uri: `${base}/${TENANT}/discovery/keys`,
      },
      [`/${TENANT}/discovery/v2.0/keys`]: { keys: [jwk] },
    };
    const body = docs[req.url ?? ""];
    res.writeHead(body ? 200 : 404, { "content-type": "application/json" });
    res.end(JSON.stringify(body ?? { error: "not_found" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  outbound.close();
  await new Promise((r) => server.close(r));
});

const token = (iss: string, aud: string) =>
  new SignJWT({ ver: iss.includes("/v2.0") ? "2.0" : "1.0", scp: "access_as_user" })
    .setProtectedHeader({ alg: "RS256", kid: "k1" })
    .setIssuer(iss)
    .setAudience(aud)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(privateKey);

describe("InboundValidator issuers", () => {
  it("accepts the v2 issuer and the v1 issuer of the metadata, not the global cloud's v1 issuer", async () => {
    const v = new InboundValidator({
      instance: `${base}/`,
      tenantId: TENANT,
      audiences: [CLIENT, `api://${CLIENT}`],
      outbound,
    });
    await expect(v.verify(await token(`${base}/${TENANT}/v2.0`, CLIENT))).resolves.toMatchObject({
      ver: "2.0",
    });
    await expect(v.verify(await token(V1_ISSUER, `api://${CLIENT}`))).resolves.toMatchObject({ ver: "1.0" });
    await expect(
      v.verify(await token(`https://sts.windows.net/${TENANT}/`, `api://${CLIENT}`)),
    ).rejects.toThrow(InvalidTokenError);
  });
});

describe("issuerMatches (multi-tenant authorities)", () => {
  it("fills {tenantid} with the token's own tid, a GUID, and compares exactly", () => {
    const issuers = ["https://login.example/{tenantid}/v2.0", "https://sts.example/{tenantid}/"];
    expect(issuerMatches(issuers, { iss: `https://login.example/${TENANT}/v2.0`, tid: TENANT })).toBe(true);
    expect(issuerMatches(issuers, { iss: `https://sts.example/${TENANT}/`, tid: TENANT })).toBe(true);
    // Another tenant's issuer than the token's tid, a non-GUID tid, or no tid at all: refused.
    const other = "1f6d3c1e-0b51-4b54-9f0e-3c1f1a2b3c4d";
    expect(issuerMatches(issuers, { iss: `https://login.example/${other}/v2.0`, tid: TENANT })).toBe(false);
    expect(issuerMatches(issuers, { iss: "https://login.example/x/v2.0", tid: "x" })).toBe(false);
    expect(issuerMatches(issuers, { iss: `https://login.example/${TENANT}/v2.0` })).toBe(false);
  });
});
