import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { KeysUnavailableError, RemoteKeySet } from "../../src/sidecar/jwks.ts";
import { createOutbound } from "../../src/sidecar/outbound.ts";

/** A JWKS endpoint whose keys, status and download count the tests control. */
let server: Server;
let url: string;
let published: JWK[] = [];
let status = 200;
let downloads = 0;
const outbound = createOutbound();

async function key(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}
type Key = Awaited<ReturnType<typeof key>>;
let oldKey: Key;
let newKey: Key;

const sign = (k: Key) =>
  new SignJWT({ sub: "x" })
    .setProtectedHeader({ alg: "RS256", kid: k.kid })
    .setExpirationTime("5m")
    .sign(k.privateKey);

beforeAll(async () => {
  [oldKey, newKey] = await Promise.all([key("old"), key("new")]);
  server = createServer((_req, res) => {
    downloads++;
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: published }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`;
});

afterAll(() => {
  outbound.close();
  server.close();
});

beforeEach(() => {
  published = [oldKey.jwk];
  status = 200;
  downloads = 0;
});

function keySet(cooldownMs: number, clock = { now: 1_000_000 }) {
  return new RemoteKeySet({ url, outbound, createLocalJWKSet, cooldownMs, now: () => clock.now });
}

describe("RemoteKeySet", () => {
  it("downloads once for many concurrent first verifications", async () => {
    const keys = keySet(5000);
    const token = await sign(oldKey);
    const results = await Promise.all(Array.from({ length: 20 }, () => jwtVerify(token, keys.getKey)));
    expect(results.every((r) => r.payload.sub === "x")).toBe(true);
    expect(downloads).toBe(1);
  });

  it("re-downloads on an unknown key id at most once per cooldown (key rollover)", async () => {
    const clock = { now: 1_000_000 };
    const keys = keySet(5000, clock);
    await jwtVerify(await sign(oldKey), keys.getKey);
    published = [oldKey.jwk, newKey.jwk];
    // Within the cooldown of the first download: no new download, the key is unknown.
    await expect(jwtVerify(await sign(newKey), keys.getKey)).rejects.toMatchObject({
      code: "ERR_JWKS_NO_MATCHING_KEY",
    });
    expect(downloads).toBe(1);
    clock.now += 5000;
    const rolled = await jwtVerify(await sign(newKey), keys.getKey);
    expect(rolled.payload.sub).toBe("x");
    expect(downloads).toBe(2);
    // A kid nobody publishes right after: refused without another download.
    const stranger = await key("stranger");
    await expect(jwtVerify(await sign(stranger), keys.getKey)).rejects.toMatchObject({
      code: "ERR_JWKS_NO_MATCHING_KEY",
    });
    expect(downloads).toBe(2);
  });

  it("shares one re-download among concurrent tokens with a new key id", async () => {
    const clock = { now: 1_000_000 };
    const keys = keySet(5000, clock);
    await jwtVerify(await sign(oldKey), keys.getKey);
    published = [newKey.jwk];
    clock.now += 10_000;
    const token = await sign(newKey);
    await Promise.all(Array.from({ length: 10 }, () => jwtVerify(token, keys.getKey)));
    expect(downloads).toBe(2);
  });

  it("downloads again when the keys are a day old, and keeps the old ones if that fails", async () => {
    const clock = { now: 1_000_000 };
    const keys = keySet(5000, clock);
    const token = await sign(oldKey);
    await jwtVerify(token, keys.getKey);
    clock.now += 24 * 3600_000 + 1;
    status = 503;
    expect((await jwtVerify(token, keys.getKey)).payload.sub).toBe("x");
    expect(downloads).toBe(2);
    status = 200;
    clock.now += 1; // the failed refresh is not retried within the cooldown
    await jwtVerify(token, keys.getKey);
    expect(downloads).toBe(2);
    clock.now += 5000;
    await jwtVerify(token, keys.getKey);
    expect(downloads).toBe(3);
  });

  it("reports keys it cannot get as KeysUnavailableError, not as a bad token", async () => {
    status = 500;
    const keys = keySet(0);
    const error = await jwtVerify(await sign(oldKey), keys.getKey).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeysUnavailableError);
    expect((error as Error).message).toMatch(/answered HTTP 500/);
    const dead = new RemoteKeySet({
      url: "http://127.0.0.1:1/keys",
      outbound,
      createLocalJWKSet,
      cooldownMs: 0,
    });
    await expect(jwtVerify(await sign(oldKey), dead.getKey)).rejects.toBeInstanceOf(KeysUnavailableError);
  });
});
