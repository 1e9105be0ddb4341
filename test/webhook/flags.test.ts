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

describe("webhook flags and the kubelet's service links", () => {
  it("read no variable a Service named agentid-webhook (or agentid-sidecar) defines in the manager's pod", async () => {
    const { WEBHOOK_OPTIONS } = await import("../../src/webhook/flags.ts");
    // <SERVICE>_PORT, _PORT_*, _SERVICE_HOST, _SERVICE_PORT, _SERVICE_PORT_*: what the kubelet sets per Service.
    const serviceLink = /^(AGENTID_WEBHOOK|AGENTID_SIDECAR)_(PORT|SERVICE_HOST|SERVICE_PORT)(_|$)/;
    const envs = Object.values(WEBHOOK_OPTIONS).flatMap((o) => (o.env ? [o.env] : []));
    expect(envs.length).toBeGreaterThan(0);
    expect(envs.filter((e) => serviceLink.test(e))).toEqual([]);
  });
});
