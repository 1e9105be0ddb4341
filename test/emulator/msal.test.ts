import { getCACertificates, setDefaultCACertificates } from "node:tls";
import { ConfidentialClientApplication, type Configuration } from "@azure/msal-node";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimsOf, EXCHANGE_SCOPE, type Harness } from "../support/emulator/test-harness.ts";
import { callJson, IDS } from "../support/emulator/testing.ts";
import { type OidcIssuer, startHarnessTrusting, startOidcIssuer } from "./oidc-issuer.ts";

/**
 * Interoperability with @azure/msal-node, a client no one here wrote: its authority validation, request
 * building and response parsing all run against the emulator. The emulator's CA is trusted process-wide
 * (this test file runs in its own worker), as NODE_EXTRA_CA_CERTS would do.
 */
let h: Harness;
let issuer: OidcIssuer;
let authority: string;
let host: string;

beforeAll(async () => {
  issuer = await startOidcIssuer();
  h = await startHarnessTrusting(issuer);
  setDefaultCACertificates([...getCACertificates("default"), h.emulator.caPem]);
  authority = `${h.emulator.url}/${IDS.tenant}`;
  host = new URL(h.emulator.url).host;
});
afterAll(async () => {
  await h?.close();
  await issuer?.close();
});

function cca(clientId: string, credential: Configuration["auth"]): ConfidentialClientApplication {
  return new ConfidentialClientApplication({
    auth: { ...credential, clientId, authority, knownAuthorities: [host] },
  });
}

/** The blueprint authenticates with a Kubernetes-style projected token through its federated credential. */
function blueprintApp(): ConfidentialClientApplication {
  return cca(IDS.blueprint, { clientId: IDS.blueprint, clientAssertion: async () => issuer.sign() });
}

/** An agent identity whose assertion callback fetches T1 from the blueprint with fmi_path = the agent id. */
function agentApp(blueprint: ConfidentialClientApplication): ConfidentialClientApplication {
  return cca(IDS.agent, {
    clientId: IDS.agent,
    clientAssertion: async () => {
      const t1 = await blueprint.acquireTokenByClientCredential({
        scopes: [EXCHANGE_SCOPE],
        fmiPath: IDS.agent,
      });
      if (!t1) throw new Error("no T1");
      return t1.accessToken;
    },
  });
}

async function counters(): Promise<{ total: number; byClient: Record<string, Record<string, number>> }> {
  return (await callJson(h.dispatcher, "GET", `${h.emulator.url}/_emulator/counters`)).json as never;
}

describe("@azure/msal-node against the emulator", () => {
  it("gets an app token with a client secret, and serves the second call from its cache", async () => {
    const app = cca(IDS.app, { clientId: IDS.app, clientSecret: IDS.appSecret });
    const first = await app.acquireTokenByClientCredential({
      scopes: ["https://graph.microsoft.com/.default"],
    });
    // Graph's tokens are v1: appid, not azp.
    expect(claimsOf(first?.accessToken)).toMatchObject({
      appid: IDS.app,
      roles: ["Application.ReadWrite.All"],
    });
    const before = (await counters()).byClient[IDS.app]?.client_credentials;
    const second = await app.acquireTokenByClientCredential({
      scopes: ["https://graph.microsoft.com/.default"],
    });
    expect(second?.accessToken).toBe(first?.accessToken);
    expect((await counters()).byClient[IDS.app]?.client_credentials).toBe(before);
  });

  it("runs the agent identity exchange: clientAssertion callback, fmiPath, T1, agent token", async () => {
    const agent = agentApp(blueprintApp());
    const result = await agent.acquireTokenByClientCredential({
      scopes: ["https://graph.microsoft.com/.default"],
    });
    expect(claimsOf(result?.accessToken)).toMatchObject({
      appid: IDS.agent,
      oid: IDS.agent,
      idtyp: "app",
      xms_par_app_azp: IDS.blueprint,
      roles: ["User.Read.All"],
    });
    expect(
      (await counters()).byClient[IDS.blueprint]?.["client_credentials+fmi_path"],
    ).toBeGreaterThanOrEqual(1);
  });

  it("does on-behalf-of for a user of the blueprint", async () => {
    const minted = await h.userToken();
    const agent = agentApp(blueprintApp());
    const result = await agent.acquireTokenOnBehalfOf({
      oboAssertion: minted,
      scopes: ["https://graph.microsoft.com/User.Read"],
    });
    expect(result?.account?.localAccountId ?? claimsOf(result?.accessToken).oid).toBe(IDS.user);
    expect(claimsOf(result?.accessToken)).toMatchObject({
      idtyp: "user",
      oid: IDS.user,
      scp: "User.Read",
      appid: IDS.agent,
    });
  });

  it("gets an agent user's token with acquireTokenByUserFederatedIdentityCredential", async () => {
    const agent = agentApp(blueprintApp());
    const t2 = await agent.acquireTokenByClientCredential({ scopes: [EXCHANGE_SCOPE] });
    const result = await agent.acquireTokenByUserFederatedIdentityCredential({
      scopes: ["https://graph.microsoft.com/Mail.Send"],
      assertion: String(t2?.accessToken),
      username: IDS.agentUserUpn,
    });
    expect(claimsOf(result?.accessToken)).toMatchObject({ oid: IDS.agentUser, scp: "Mail.Send" });
    expect(String(claimsOf(result?.accessToken).xms_sub_fct).split(" ")).toContain("13");
    expect(result?.account?.username).toBe(IDS.agentUserUpn);
    // MSAL reads the agent user's token back from its cache, and redeems the refresh token when forced.
    if (!result?.account) throw new Error("MSAL built no account from the response");
    const cached = await agent.acquireTokenSilent({
      account: result.account,
      scopes: ["https://graph.microsoft.com/Mail.Send"],
    });
    expect(cached?.accessToken).toBe(result.accessToken);
    const before = (await counters()).byClient[IDS.agent]?.refresh_token ?? 0;
    const refreshed = await agent.acquireTokenSilent({
      account: result.account,
      scopes: ["https://graph.microsoft.com/Mail.Send"],
      forceRefresh: true,
    });
    expect(refreshed?.accessToken).not.toBe(result.accessToken);
    expect(claimsOf(refreshed?.accessToken)).toMatchObject({ oid: IDS.agentUser, scp: "Mail.Send" });
    expect((await counters()).byClient[IDS.agent]?.refresh_token).toBe(before + 1);
  });

  it("surfaces the emulator's AADSTS error to the caller", async () => {
    const app = cca(IDS.app, { clientId: IDS.app, clientSecret: "not-the-secret" });
    await expect(
      app.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] }),
    ).rejects.toMatchObject({
      errorCode: "invalid_client",
      errorMessage: expect.stringContaining("AADSTS7000215"),
    });
  });

  it("issues tokens jose validates against the discovery document", async () => {
    const app = cca(IDS.app, { clientId: IDS.app, clientSecret: IDS.appSecret });
    const token = (
      await app.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] })
    )?.accessToken;
    const config = (await (await fetch(`${authority}/v2.0/.well-known/openid-configuration`)).json()) as {
      issuer: string;
      jwks_uri: string;
    };
    // Graph's token is v1: its issuer is https://sts.windows.net/<tid>/, not the v2 discovery issuer, so a
    // validator accepts both (as Microsoft.Identity.Web does).
    const { payload } = await jwtVerify(String(token), createRemoteJWKSet(new URL(config.jwks_uri)), {
      issuer: [config.issuer, `https://sts.windows.net/${IDS.tenant}/`],
      audience: "https://graph.microsoft.com",
      algorithms: ["RS256"],
    });
    expect(payload.tid).toBe(IDS.tenant);
  });
});
