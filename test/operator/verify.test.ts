import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KubeClient } from "../../src/kube/client.ts";
import { ApiError } from "../../src/kube/errors.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import { outboundDispatcher } from "../../src/operator/https.ts";
import { createVerifier, tokenForbiddenMessage, type VerificationTarget } from "../../src/operator/verify.ts";
import { blueprint, identity } from "../support/api-fixtures.ts";

/**
 * The verification's token never leaves the operator: a hostile token endpoint that echoes the client
 * assertion (or the secret) back in every error shape must not get it into the result.
 */
const TOKEN =
  "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bnM6c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
const SECRET = "s3cr3t-value-never-shown";
let server: Server;
let caPem: string;
let mode: "echo-400" | "echo-500" | "ok" | "reset" | "throttled" | "busy-until" = "ok";
/** The HTTP-date the "busy-until" mode answers in Retry-After. */
const BUSY_UNTIL = new Date(Date.now() + 3_600_000).toUTCString();
const received: URLSearchParams[] = [];

beforeAll(async () => {
  const ca = await createCertificateAuthority("verify-test CA");
  const leaf = await issueCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  caPem = ca.certPem;
  server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      const form = new URLSearchParams(body);
      received.push(form);
      const echoed = form.get("client_assertion") ?? form.get("client_secret") ?? "";
      if (mode === "reset") return req.socket.destroy();
      // Entra's throttling answer (AADSTS50196, as the emulator's 429 fault gives it), and a 503 with a date.
      if (mode === "throttled" || mode === "busy-until")
        return res
          .writeHead(mode === "throttled" ? 429 : 503, {
            "content-type": "application/json",
            "retry-after": mode === "throttled" ? "120" : BUSY_UNTIL,
          })
          .end(JSON.stringify({ error: "temporarily_unavailable", error_codes: [50196] }));
      if (mode === "ok")
        return res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ access_token: "x", expires_in: 3600 }));
      const status = mode === "echo-400" ? 400 : 500;
      res.writeHead(status, { "content-type": "application/json" }).end(
        JSON.stringify({
          error: "invalid_client",
          error_description: `AADSTS700211: bad assertion ${echoed} secret ${echoed}`,
          error_codes: [700211],
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Stands in for the API server's TokenRequest only; the real one is exercised in test/integration/operator.test.ts. */
const kube = {
  create: async () => ({ status: { token: TOKEN } }),
} as unknown as KubeClient;

function target(): VerificationTarget {
  const port = (server.address() as AddressInfo).port;
  return {
    identity: identity({ serviceAccountName: "sa" }, "a"),
    blueprint: blueprint({ cloud: "Custom", authorityHost: `https://127.0.0.1:${port}` }),
    agentClientId: "33333333-3333-3333-3333-333333333333",
  };
}
/** The ServiceAccount as the operator created it: labelled for identity "a". */
const labelled = {
  kind: "serviceAccountToken" as const,
  serviceAccount: { name: "sa", labels: { "agentid.io/agentidentity": "a" } },
};

const hint = { tenantId: "t", blueprintClientId: "b" };

describe("createVerifier", () => {
  it("sends the blueprint leg with the ServiceAccount token as client assertion and fmi_path", async () => {
    mode = "ok";
    const verifier = createVerifier({ kube, dispatcher: outboundDispatcher([caPem]) });
    expect(await verifier.verify(target(), labelled, hint)).toEqual({
      state: "verified",
    });
    const form = received.at(-1);
    expect(form?.get("grant_type")).toBe("client_credentials");
    expect(form?.get("scope")).toBe("api://AzureADTokenExchange/.default");
    expect(form?.get("fmi_path")).toBe("33333333-3333-3333-3333-333333333333");
    expect(form?.get("client_assertion_type")).toBe("urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    expect(form?.get("client_assertion")).toBe(TOKEN);
  });

  it.each(["echo-400", "echo-500", "reset"] as const)(
    "keeps the token out of the result when the endpoint answers %s",
    async (m) => {
      mode = m;
      const verifier = createVerifier({ kube, dispatcher: outboundDispatcher([caPem]) });
      const result = await verifier.verify(target(), labelled, hint);
      expect(result.state).not.toBe("verified");
      expect(JSON.stringify(result)).not.toContain(TOKEN);
      if (m === "echo-400")
        expect(result).toMatchObject({
          state: "failed",
          failure: { reason: "IssuerNotTrusted", code: "AADSTS700211" },
        });
    },
  );

  it("reads Entra's Retry-After (seconds or an HTTP-date) from a 429 or 503", async () => {
    const verifier = createVerifier({ kube, dispatcher: outboundDispatcher([caPem]) });
    mode = "throttled";
    expect(await verifier.verify(target(), labelled, hint)).toMatchObject({
      state: "unreachable",
      retryAfterMs: 120_000,
    });
    mode = "busy-until";
    const busy = await verifier.verify(target(), labelled, hint);
    expect(busy.state).toBe("unreachable");
    // An hour from when the server made its date, less the time since (and the date's whole seconds).
    const ms = busy.state === "unreachable" ? (busy.retryAfterMs ?? 0) : 0;
    expect(ms).toBeGreaterThan(3_500_000);
    expect(ms).toBeLessThanOrEqual(3_600_000);
    mode = "echo-500";
    const plain = await verifier.verify(target(), labelled, hint);
    expect(plain.state).toBe("unreachable");
    expect(plain).not.toHaveProperty("retryAfterMs");
  });

  it("keeps a client secret out of the result", async () => {
    mode = "echo-400";
    const verifier = createVerifier({ kube, dispatcher: outboundDispatcher([caPem]) });
    const result = await verifier.verify(target(), { kind: "clientSecret", secret: SECRET }, hint);
    expect(received.at(-1)?.get("client_secret")).toBe(SECRET);
    expect(result.state).toBe("failed");
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it("mints no token for a ServiceAccount that is not labelled for this identity", async () => {
    mode = "ok";
    let minted = 0;
    const counting = {
      create: async () => {
        minted++;
        return { status: { token: TOKEN } };
      },
    } as unknown as KubeClient;
    const verifier = createVerifier({ kube: counting, dispatcher: outboundDispatcher([caPem]) });
    const before = received.length;
    for (const labels of [undefined, { "agentid.io/agentidentity": "other" }]) {
      await expect(
        verifier.verify(
          target(),
          { kind: "serviceAccountToken", serviceAccount: { name: "sa", ...(labels ? { labels } : {}) } },
          hint,
        ),
      ).rejects.toThrow(/not labelled/);
    }
    expect(minted).toBe(0);
    expect(received.length).toBe(before);
  });

  it("turns the API server's 403 to the TokenRequest into tokenForbidden naming the RoleBinding, and calls nobody", async () => {
    const forbidding = {
      create: async (path: string) => {
        throw new ApiError({
          status: 403,
          reason: "Forbidden",
          message: `serviceaccounts "sa" is forbidden: User "system:serviceaccount:agentid-system:agentid-manager" cannot create resource "serviceaccounts/token" in API group "" in the namespace "ns"`,
          method: "POST",
          path,
        });
      },
    } as unknown as KubeClient;
    const verifier = createVerifier({ kube: forbidding, dispatcher: outboundDispatcher([caPem]) });
    const before = received.length;
    const result = await verifier.verify(target(), labelled, hint);
    expect(result).toMatchObject({ state: "tokenForbidden" });
    expect(result.state === "tokenForbidden" && result.message).toContain(
      "kubectl create rolebinding agentid-token-requester --clusterrole agentid-token-requester --serviceaccount agentid-system:agentid-manager -n ",
    );
    expect(received.length).toBe(before);
  });

  it("reports an admission webhook's 403 as TokenRequestDenied with the webhook's words, not as missing RBAC", async () => {
    const denying = {
      create: async (path: string) => {
        throw new ApiError({
          status: 403,
          reason: "Forbidden",
          message:
            'admission webhook "token.guard.agentid.io" denied the request: agentid: a TokenRequest for ServiceAccount sa with the audience api://AzureADTokenExchange is refused: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln',
          method: "POST",
          path,
        });
      },
    } as unknown as KubeClient;
    const verifier = createVerifier({ kube: denying, dispatcher: outboundDispatcher([caPem]) });
    const before = received.length;
    const result = await verifier.verify(target(), labelled, hint);
    expect(result).toMatchObject({ state: "tokenForbidden", reason: "TokenRequestDenied" });
    const message = result.state === "tokenForbidden" ? result.message : "";
    expect(message).toContain(
      "The admission webhook token.guard.agentid.io refused the manager a TokenRequest",
    );
    expect(message).toContain("agentid: a TokenRequest for ServiceAccount sa");
    expect(message).not.toContain("kubectl create rolebinding");
    // Whatever the webhook said, no token text reaches the status.
    expect(message).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
    expect(received.length).toBe(before);
  });

  it("names a placeholder when the refusal does not name a ServiceAccount", () => {
    expect(tokenForbiddenMessage("ns", "sa", 'User "alice" cannot create')).toContain(
      "--serviceaccount <manager-namespace>:agentid-manager -n ns",
    );
  });

  it("does not trust the endpoint without its CA", async () => {
    mode = "ok";
    const verifier = createVerifier({ kube, dispatcher: outboundDispatcher([]) });
    expect(await verifier.verify(target(), labelled, hint)).toMatchObject({
      state: "unreachable",
    });
  });
});
