import { describe, expect, it } from "vitest";
import { classifyEntraError } from "../../src/operator/entra-errors.ts";

const context = {
  tenantId: "t",
  blueprintClientId: "b",
  azCommand: "az ad app federated-credential create --id b --parameters '{}'",
};
const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";

describe("classifyEntraError", () => {
  it.each([
    [70021, "NoMatchingFederatedCredential", "az ad app federated-credential create"],
    [700211, "IssuerNotTrusted", "az ad app federated-credential create"],
    [700016, "BlueprintNotFound", "AgentIdentityBlueprint's clientId"],
    [90002, "TenantNotFound", "AgentIdentityBlueprint's tenantId"],
    [7000215, "InvalidClientSecret", "wrong client secret"],
    [123456, "TokenRequestRejected", "AADSTS123456"],
  ])("maps AADSTS%s to %s with a hint", (code, reason, hint) => {
    const failure = classifyEntraError(
      400,
      {
        error: "invalid_client",
        error_description: `AADSTS${code}: Something happened.\r\nTrace ID: abc Correlation ID: def`,
        error_codes: [code],
      },
      context,
    );
    expect(failure.reason).toBe(reason);
    expect(failure.code).toBe(`AADSTS${code}`);
    expect(failure.message).toContain(`AADSTS${code}: Something happened.`);
    expect(failure.message).toContain(hint);
    expect(failure.message).not.toContain("Trace ID");
  });

  it.each([
    [50166, true],
    [90061, true],
    [70021, false],
    [700213, false],
    [7000215, false],
    [123456, false],
  ])("AADSTS%s is transient (retried with backoff): %s", (code, transient) => {
    const failure = classifyEntraError(
      400,
      { error: "invalid_request", error_description: `AADSTS${code}: x`, error_codes: [code] },
      context,
    );
    expect(failure.transient === true).toBe(transient);
  });

  it("never repeats a token Entra echoed", () => {
    const failure = classifyEntraError(
      400,
      { error: "invalid_request", error_description: `AADSTS50027: bad token ${jwt}`, error_codes: [50027] },
      context,
    );
    expect(failure.message).not.toContain(jwt);
    expect(failure.message).toContain("[redacted-jwt]");
  });

  it("copes with an answer that has no AADSTS code", () => {
    const failure = classifyEntraError(500, {}, context);
    expect(failure).toMatchObject({ reason: "TokenRequestRejected" });
    expect(failure.code).toBeUndefined();
    expect(failure.message).toContain("HTTP 500");
  });
});
