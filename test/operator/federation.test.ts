import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import {
  azCommand,
  desiredFederatedCredential,
  federatedCredentialName,
  sameTrust,
  verificationFingerprint,
} from "../../src/operator/federation.ts";

const ISSUER = "https://127.0.0.1:6443";
const base: AgentIdentity = {
  metadata: { name: "a", namespace: "team-a" },
  spec: {
    tenantId: "11111111-1111-1111-1111-111111111111",
    blueprint: { clientId: "22222222-2222-2222-2222-222222222222" },
    serviceAccountName: "agent",
  },
};

describe("desiredFederatedCredential", () => {
  it("trusts the issuer, the ServiceAccount subject and the token-exchange audience", () => {
    const fic = desiredFederatedCredential("team-a", "agent", ISSUER);
    expect(fic).toMatchObject({
      issuer: ISSUER,
      subject: "system:serviceaccount:team-a:agent",
      audiences: ["api://AzureADTokenExchange"],
    });
  });

  it.each([
    ["same inputs", ISSUER, "system:serviceaccount:a:b", ISSUER, "system:serviceaccount:a:b", true],
    [
      "another issuer",
      ISSUER,
      "system:serviceaccount:a:b",
      "https://other",
      "system:serviceaccount:a:b",
      false,
    ],
    ["another subject", ISSUER, "system:serviceaccount:a:b", ISSUER, "system:serviceaccount:a:c", false],
  ])("gives a deterministic name: %s", (_n, i1, s1, i2, s2, same) => {
    expect(federatedCredentialName(i1, s1) === federatedCredentialName(i2, s2)).toBe(same);
  });

  it("keeps names within Graph's 120 characters and URL friendly", () => {
    const name = federatedCredentialName(
      ISSUER,
      `system:serviceaccount:${"n".repeat(63)}:${"s".repeat(253)}`,
    );
    expect(name.length).toBeLessThanOrEqual(120);
    expect(name).toMatch(/^[A-Za-z0-9-]+$/);
  });
});

describe("azCommand", () => {
  it("is a pasteable az command with the credential as JSON parameters, quoted for the shell", () => {
    const fic = desiredFederatedCredential("team-a", "agent", "https://issuer.example/it's");
    const command = azCommand("22222222-2222-2222-2222-222222222222", fic);
    expect(command).toMatch(
      /^az ad app federated-credential create --id 22222222-2222-2222-2222-222222222222 --parameters '/,
    );
    const quoted = command.slice(command.indexOf("--parameters ") + 13);
    const unquoted = quoted.slice(1, -1).replaceAll(`'"'"'`, "'");
    expect(JSON.parse(unquoted)).toEqual({
      name: fic.name,
      issuer: fic.issuer,
      subject: fic.subject,
      audiences: fic.audiences,
    });
  });
});

describe("sameTrust", () => {
  it("compares issuer, subject and audiences but not names", () => {
    const a = desiredFederatedCredential("n", "s", ISSUER);
    expect(sameTrust(a, { ...a, subject: a.subject })).toBe(true);
    expect(sameTrust(a, { ...a, audiences: ["api://other"] })).toBe(false);
  });
});

describe("verificationFingerprint", () => {
  const fp = (patch: Partial<AgentIdentity["spec"]>, issuer = ISSUER) =>
    verificationFingerprint({ ...base, spec: { ...base.spec, ...patch } }, issuer);
  it.each([
    ["tenant", { tenantId: "33333333-3333-3333-3333-333333333333" }],
    ["agent", { agentId: "44444444-4444-4444-4444-444444444444" }],
    ["service account", { serviceAccountName: "other" }],
    ["instance", { instance: "https://login.example/" }],
    [
      "credential",
      {
        blueprint: {
          clientId: base.spec.blueprint.clientId,
          credential: { clientSecret: { secretRef: { name: "s", key: "k" } } },
        },
      },
    ],
  ])("changes with the %s", (_n, patch) => {
    expect(fp(patch)).not.toBe(fp({}));
  });
  it("changes with the generation (any spec change)", () => {
    expect(
      verificationFingerprint({ ...base, metadata: { ...base.metadata, generation: 2 } }, ISSUER),
    ).not.toBe(fp({}));
  });
  it("changes with the issuer and ignores case of GUIDs", () => {
    expect(fp({}, "https://other")).not.toBe(fp({}));
    expect(fp({ downstreamApis: { g: { baseUrl: "https://g/", scopes: ["s"] } } })).toBe(fp({}));
    expect(fp({ tenantId: base.spec.tenantId.toUpperCase() })).toBe(fp({}));
  });
});
