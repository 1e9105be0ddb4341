import { beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";
import {
  type CertificatePolicy,
  caBundle,
  decodeSecretData,
  encodeSecretData,
  loadable,
  planCertificates,
  SECRET_KEYS,
  type SecretData,
  serviceDnsNames,
} from "../../src/webhook/certificates.ts";

const DAY = 86_400_000;
const policy: CertificatePolicy = {
  caValidDays: 3650,
  leafValidDays: 365,
  caRenewBeforeDays: 365,
  leafRenewBeforeDays: 90,
  dnsNames: serviceDnsNames("agentid-webhook", "agentid-system"),
  ipAddresses: [],
};
let good: SecretData;
let otherCa: SecretData;

beforeAll(async () => {
  const ca = await createCertificateAuthority("ca", 3650);
  const leaf = await issueCertificate(ca, {
    commonName: "agentid-webhook",
    dnsNames: policy.dnsNames,
    usage: "server",
    validDays: 365,
  });
  good = { "ca.crt": ca.certPem, "ca.key": ca.keyPem, "tls.crt": leaf.certPem, "tls.key": leaf.keyPem };
  const ca2 = await createCertificateAuthority("ca2", 3650);
  otherCa = { ...good, "ca.crt": ca2.certPem, "ca.key": ca2.keyPem };
});

const input = (data: SecretData | undefined, caPublishedAt?: number) => ({
  data,
  caPublishedAt,
  propagationMs: 60_000,
});

describe("planCertificates", () => {
  it("issues everything when there is no Secret or its CA is broken", () => {
    expect(planCertificates(input(undefined), policy, Date.now()).action).toBe("issue-ca");
    expect(planCertificates(input({ ...good, "ca.key": "junk" }), policy, Date.now()).action).toBe(
      "issue-ca",
    );
    expect(planCertificates(input({ ...good, "ca.crt": good["tls.crt"] }), policy, Date.now()).action).toBe(
      "issue-ca",
    );
  });

  it("keeps good material and says when to look again (the leaf's renewal time)", () => {
    const now = Date.now();
    const plan = planCertificates(input(good), policy, now);
    expect(plan.action).toBe("keep");
    if (plan.action !== "keep") return;
    expect(plan.nextCheckAt).toBeGreaterThan(now + 270 * DAY);
    expect(plan.nextCheckAt).toBeLessThan(now + 280 * DAY);
  });

  it("renews the leaf before it expires, when its key or SANs are wrong, or another CA signed it", () => {
    expect(planCertificates(input(good), policy, Date.now() + 300 * DAY).action).toBe("issue-leaf");
    expect(planCertificates(input({ ...good, "tls.key": good["ca.key"] }), policy, Date.now()).action).toBe(
      "issue-leaf",
    );
    expect(
      planCertificates(input(good), { ...policy, dnsNames: ["elsewhere.example"] }, Date.now()).action,
    ).toBe("issue-leaf");
    expect(planCertificates(input(otherCa), policy, Date.now()).action).toBe("issue-leaf");
  });

  it("after a CA rotation, keeps the old CA's leaf until the new bundle has had time to reach the API servers", () => {
    const rotated = { ...otherCa, [SECRET_KEYS.previousCaCert]: good["ca.crt"] };
    const now = Date.now();
    expect(planCertificates(input(rotated), policy, now)).toMatchObject({ action: "keep" });
    expect(planCertificates(input(rotated, now - 10_000), policy, now)).toEqual({
      action: "keep",
      nextCheckAt: now + 50_000,
    });
    expect(planCertificates(input(rotated, now - 60_000), policy, now).action).toBe("issue-leaf");
  });

  it("renews the CA in its last year", () => {
    const plan = planCertificates(input(good), policy, Date.now() + 3300 * DAY);
    expect(plan).toEqual({ action: "issue-ca", reason: "the CA expires soon", leafToo: true });
  });
});

describe("caBundle and loadable", () => {
  it("trusts the previous CA while it is valid", () => {
    const data = { ...otherCa, [SECRET_KEYS.previousCaCert]: good["ca.crt"] };
    const bundle = caBundle(data, Date.now());
    expect(bundle).toContain(otherCa["ca.crt"]?.trim());
    expect(bundle).toContain(good["ca.crt"]?.trim());
    expect(caBundle(data, Date.now() + 3700 * DAY)).not.toContain(good["ca.crt"]?.trim());
  });

  it("loads only a matching, in-date pair", () => {
    expect(loadable(good, Date.now())).toEqual({ cert: good["tls.crt"], key: good["tls.key"] });
    expect(loadable({ ...good, "tls.key": good["ca.key"] }, Date.now())).toBeUndefined();
    expect(loadable(good, Date.now() + 400 * DAY)).toBeUndefined();
    expect(loadable(undefined, Date.now())).toBeUndefined();
  });

  it("round-trips Secret data", () => {
    expect(decodeSecretData(encodeSecretData(good))).toEqual(good);
  });
});
