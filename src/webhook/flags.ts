import { type OptionSpec, type OptionValues, portOption, stringOption, UsageError } from "../lib/command.ts";
import type { WebhookSettings } from "./component.ts";
import type { CertificateMode } from "./serving.ts";
import { DEFAULT_ENTRYPOINT, DEFAULT_NODE, type NativeSidecarMode } from "./settings.ts";

/**
 * The manager's webhook flags (documented in docs/webhook.md). The webhook runs when --sidecar-image is
 * given; without it the manager runs the operator only.
 */
export const WEBHOOK_OPTIONS: Record<string, OptionSpec> = {
  "sidecar-image": {
    type: "string",
    help: "Image of the token sidecar the webhook injects; the webhook runs only when this is set.",
    env: "AGENTID_SIDECAR_IMAGE",
  },
  "sidecar-image-pull-policy": {
    type: "string",
    help: "imagePullPolicy of the injected sidecar: Always, IfNotPresent or Never (default: the cluster's).",
    env: "AGENTID_SIDECAR_IMAGE_PULL_POLICY",
  },
  "sidecar-node": {
    type: "string",
    help: "Absolute path of the node binary inside the sidecar image.",
    default: DEFAULT_NODE,
  },
  "sidecar-entrypoint": {
    type: "string",
    help: "Path of the agentid entry script inside the sidecar image.",
    default: DEFAULT_ENTRYPOINT,
  },
  "native-sidecar": {
    type: "string",
    help: "auto (from the API server's version, 1.29+), on or off: inject an init container with restartPolicy Always, or the first container with a postStart wait.",
    default: "auto",
  },
  "webhook-host": {
    type: "string",
    help: "Address the admission HTTPS server listens on.",
    default: "0.0.0.0",
  },
  "webhook-port": {
    type: "string",
    help: "Port of the admission HTTPS server (the Service's targetPort).",
    default: "9443",
    // Not AGENTID_WEBHOOK_PORT: the kubelet sets that (a service link of the Service agentid-webhook).
    env: "AGENTID_WEBHOOK_LISTEN_PORT",
  },
  "webhook-cert-mode": {
    type: "string",
    help: "self: the leader issues and rotates the serving certificate and patches the caBundle; external: cert-manager (or you) writes the Secret and the caBundle, the manager only loads it.",
    default: "self",
  },
  "webhook-secret": {
    type: "string",
    help: "Secret (in the manager's namespace) holding the serving certificate.",
    default: "agentid-webhook-tls",
  },
  "webhook-configuration": {
    type: "string",
    help: "Name of the MutatingWebhookConfiguration and the guard's ValidatingWebhookConfiguration whose caBundles the leader keeps.",
    default: "agentid-webhook",
  },
  "webhook-service": {
    type: "string",
    help: "Service the API server calls; its DNS names go into the serving certificate.",
    default: "agentid-webhook",
  },
  "webhook-cert-extra-names": {
    type: "string",
    help: "More names for the serving certificate, comma-separated: DNS names and IP addresses (e.g. 127.0.0.1 when the API server calls a URL on loopback).",
  },
};

const IP = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

const PULL_POLICIES = ["Always", "IfNotPresent", "Never"] as const;

/** The webhook's settings from parsed flags, or undefined when the webhook is off (no --sidecar-image). */
export function webhookSettingsFrom(
  values: OptionValues,
  managerNamespace: string,
  allowedAuthorityHosts: readonly string[] = [],
): WebhookSettings | undefined {
  const image = stringOption(values, "sidecar-image");
  if (!image) return undefined;
  const pull = stringOption(values, "sidecar-image-pull-policy");
  if (pull !== undefined && !(PULL_POLICIES as readonly string[]).includes(pull)) {
    throw new UsageError(`--sidecar-image-pull-policy must be Always, IfNotPresent or Never, got '${pull}'`);
  }
  const native = stringOption(values, "native-sidecar") ?? "auto";
  if (native !== "auto" && native !== "on" && native !== "off") {
    throw new UsageError(`--native-sidecar must be auto, on or off, got '${native}'`);
  }
  const mode = stringOption(values, "webhook-cert-mode") ?? "self";
  if (mode !== "self" && mode !== "external") {
    throw new UsageError(`--webhook-cert-mode must be self or external, got '${mode}'`);
  }
  const extra = (stringOption(values, "webhook-cert-extra-names") ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  const ipAddresses = extra.filter((n) => IP.test(n));
  const extraDnsNames = extra.filter((n) => !IP.test(n));
  return {
    listen: {
      host: stringOption(values, "webhook-host") ?? "0.0.0.0",
      port: portOption(values, "webhook-port") ?? 9443,
    },
    sidecar: {
      image,
      ...(pull ? { imagePullPolicy: pull as (typeof PULL_POLICIES)[number] } : {}),
      native: native as NativeSidecarMode,
      node: stringOption(values, "sidecar-node") ?? DEFAULT_NODE,
      entrypoint: stringOption(values, "sidecar-entrypoint") ?? DEFAULT_ENTRYPOINT,
    },
    certificates: {
      mode: mode as CertificateMode,
      namespace: managerNamespace,
      secretName: stringOption(values, "webhook-secret") ?? "agentid-webhook-tls",
      webhookConfigurationName: stringOption(values, "webhook-configuration") ?? "agentid-webhook",
      serviceName: stringOption(values, "webhook-service") ?? "agentid-webhook",
      ...(extraDnsNames.length > 0 ? { extraDnsNames } : {}),
      ...(ipAddresses.length > 0 ? { ipAddresses } : {}),
    },
    allowedAuthorityHosts,
  };
}
