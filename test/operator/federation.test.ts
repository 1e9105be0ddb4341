import { describe, expect, it } from "vitest";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import {
  azCommand,
  desiredFederatedCredential,
  federatedCredentialName,
  sameTrust,
  verificationFingerprint,
} from "../../src/operator/federation.ts";
import { AGENT, blueprint, identity } from "../support/api-fixtures.ts";

const ISSUER = "https://127.0.0.1:6443";
const base: AgentIdentity = identity({ serviceAccountName: "agent" }, "a", "team-a");
const bp: AgentIdentityBlueprint = blueprint();

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
  const fp = (
    patch: Partial<AgentIdentity["spec"]> = {},
    bpPatch: Partial<AgentIdentityBlueprint["spec"]> = {},
    issuer = ISSUER,
    agent = AGENT,
  ) =>
    verificationFingerprint(
      { ...base, spec: { ...base.spec, ...patch } },
      { ...bp, spec: { ...bp.spec, ...bpPatch } },
      agent,
      issuer,
    );
  it.each([
    ["tenant", {}, { tenantId: "33333333-3333-3333-3333-333333333333" }],
    ["blueprint client id", {}, { clientId: "55555555-5555-5555-5555-555555555555" }],
    ["cloud", {}, { cloud: "AzureChina" as const }],
    ["service account", { serviceAccountName: "other" }, {}],
    ["development secret", { clientSecretRef: { name: "s", key: "k" } }, {}],
  ])("changes with the %s", (_n, patch, bpPatch) => {
    expect(fp(patch, bpPatch)).not.toBe(fp());
  });
  it("changes with the agent, the issuer and both generations (any spec change)", () => {
    expect(fp({}, {}, ISSUER, "44444444-4444-4444-4444-444444444444")).not.toBe(fp());
    expect(fp({}, {}, "https://other")).not.toBe(fp());
    expect(
      verificationFingerprint({ ...base, metadata: { ...base.metadata, generation: 2 } }, bp, AGENT, ISSUER),
    ).not.toBe(fp());
    expect(
      verificationFingerprint(base, { ...bp, metadata: { ...bp.metadata, generation: 2 } }, AGENT, ISSUER),
    ).not.toBe(fp());
  });
  it("ignores what does not touch the token request, and the case of GUIDs", () => {
    expect(fp({ downstreamApis: [{ name: "g", baseUrl: "https://g/", scopes: ["s"] }] })).toBe(fp());
    expect(fp({}, { tenantId: bp.spec.tenantId.toUpperCase() })).toBe(fp());
  });
});
