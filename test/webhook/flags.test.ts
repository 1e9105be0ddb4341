import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/lib/command.ts";
import { webhookSettingsFrom } from "../../src/webhook/flags.ts";

describe("webhook flags", () => {
  it("leave the webhook off without --sidecar-image", () => {
    expect(webhookSettingsFrom({}, "agentid-system")).toBeUndefined();
  });

  it("build the settings with the documented defaults", () => {
    expect(webhookSettingsFrom({ "sidecar-image": "ghcr.io/agentid/sidecar:1" }, "agentid-system")).toEqual({
      listen: { host: "0.0.0.0", port: 9443 },
      sidecar: {
        image: "ghcr.io/agentid/sidecar:1",
        native: "auto",
        node: "/usr/local/bin/node",
        entrypoint: "/app/dist/cli.js",
      },
      certificates: {
        mode: "self",
        namespace: "agentid-system",
        secretName: "agentid-webhook-tls",
        webhookConfigurationName: "agentid-webhook",
        serviceName: "agentid-webhook",
      },
      allowedAuthorityHosts: [],
    });
  });

  it("split extra certificate names into DNS names and IP addresses", () => {
    const s = webhookSettingsFrom(
      { "sidecar-image": "i", "webhook-cert-extra-names": "127.0.0.1, webhook.local,::1" },
      "ns",
    );
    expect(s?.certificates.ipAddresses).toEqual(["127.0.0.1", "::1"]);
    expect(s?.certificates.extraDnsNames).toEqual(["webhook.local"]);
  });

  it("refuse bad values with the flag's name", () => {
    const base = { "sidecar-image": "i" };
    expect(() => webhookSettingsFrom({ ...base, "native-sidecar": "yes" }, "ns")).toThrow(/--native-sidecar/);
    expect(() => webhookSettingsFrom({ ...base, "webhook-cert-mode": "acme" }, "ns")).toThrow(UsageError);
    expect(() => webhookSettingsFrom({ ...base, "sidecar-image-pull-policy": "always" }, "ns")).toThrow(
      /Always/,
    );
    expect(() => webhookSettingsFrom({ ...base, "webhook-port": "99999" }, "ns")).toThrow(/--webhook-port/);
  });
});
