import { readFileSync } from "node:fs";
import { loadKubeConfig } from "../kube/kubeconfig.ts";
import { type Command, type OptionValues, portOption, stringOption, UsageError } from "../lib/command.ts";
import { createLogger, isLogLevel } from "../lib/log.ts";
import { readCaFiles } from "../operator/https.ts";
import { WEBHOOK_OPTIONS, webhookSettingsFrom } from "../webhook/flags.ts";
import { isLoopback, parseBindAddress } from "./bind-address.ts";
import { stopOnSignals } from "./signals.ts";
import { MANAGER_TUNING, managerTuningWarning } from "./v8-flags.ts";

/** "90s", "30m", "6h" or plain milliseconds. */
export function parseDuration(value: string, flag: string): number {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(value.trim());
  if (!match) throw new UsageError(`--${flag} must be a duration such as 90s, 30m or 6h, got '${value}'`);
  const n = Number(match[1]);
  const unit = match[2] ?? "ms";
  return n * { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[unit as "ms" | "s" | "m" | "h"];
}

/**
 * What a shutdown that ran out of time was waiting for: the manager's own steps, else the kinds of the
 * handles still keeping the process alive (from process.getActiveResourcesInfo()).
 */
export function shutdownPending(steps: readonly string[], handles: readonly string[]): string {
  if (steps.length > 0) return steps.join("; ");
  const counts = new Map<string, number>();
  for (const h of handles) counts.set(h, (counts.get(h) ?? 0) + 1);
  const open = [...counts].map(([kind, n]) => (n > 1 ? `${n} ${kind}` : kind)).join(", ");
  return `nothing the manager tracks; open handles: ${open || "none"}`;
}

/**
 * The Lease's namespace: the flag (or POD_NAMESPACE), else the namespace the manager runs in (the
 * in-cluster namespace file, or the kubeconfig context's namespace), else "default".
 */
export function leaseNamespaceFrom(flag: string | undefined, configNamespace: string | undefined): string {
  return flag || configNamespace || "default";
}

function listOption(values: OptionValues, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [String(v)])
    .flatMap((s) => s.split(","))
    .map((s) => s.trim())
    .filter(Boolean);
}

export const managerCommand: Command = {
  name: "manager",
  summary:
    "Run the AgentIdentity operator and, with --sidecar-image, the admission webhook (leader-elected; health, readiness and metrics over HTTP).",
  description: [
    "Reconciles AgentIdentityBlueprints and AgentIdentities: checks that a blueprint admits each identity, ensures",
    "its ServiceAccount, computes (or in Graph mode writes) the federated identity credential, creates agent",
    "identities on request, and proves it all against Entra. Uses the in-cluster configuration, or",
    "KUBECONFIG / --kubeconfig outside a cluster. Logs are JSON on stdout; tokens never appear in them.",
    `Start it as \`node ${MANAGER_TUNING.flags.join(" ")} cli.js manager\` (as the image does): V8 then keeps its heap`,
    'near what is alive (docs/operator.md "Memory"); without the flags it says so and runs on.',
    "With --sidecar-image it also serves the mutating admission webhook on --webhook-port (HTTPS) on every",
    "replica, and the leader keeps its serving certificate and the caBundle (docs/webhook.md).",
  ].join("\n"),
  options: {
    kubeconfig: {
      type: "string",
      help: "Kubeconfig file(s) (default: in-cluster, else ~/.kube/config). Exec plugins must return a token.",
      env: "KUBECONFIG",
    },
    namespace: {
      type: "string",
      help: "Watch only this namespace (default: all namespaces).",
      env: "AGENTID_WATCH_NAMESPACE",
    },
    "lease-namespace": {
      type: "string",
      help: "Namespace of the leader-election Lease (default: the pod's own namespace, from the in-cluster namespace file; else the kubeconfig context's; else default).",
      env: "POD_NAMESPACE",
    },
    "lease-name": { type: "string", help: "Name of the leader-election Lease.", default: "agentid-manager" },
    "health-host": {
      type: "string",
      help: "Address of the /healthz and /readyz server (the kubelet's probes).",
      default: "0.0.0.0",
    },
    "health-port": {
      type: "string",
      help: "Port of the /healthz and /readyz server.",
      default: "8081",
      env: "AGENTID_HEALTH_PORT",
    },
    "metrics-bind-address": {
      type: "string",
      help: "host:port of /metrics; 0 turns it off. On loopback (the default) it is plain HTTP; any other address serves HTTPS and checks every caller with TokenReview + SubjectAccessReview (get /metrics).",
      default: "127.0.0.1:8080",
      env: "AGENTID_METRICS_BIND_ADDRESS",
    },
    "metrics-cert-file": {
      type: "string",
      help: "PEM certificate for /metrics when exposed (default: self-signed at start-up).",
    },
    "metrics-key-file": { type: "string", help: "PEM key for --metrics-cert-file." },
    "log-level": {
      type: "string",
      help: "fatal, error, warn, info, debug, trace or silent.",
      default: "info",
      env: "AGENTID_LOG_LEVEL",
    },
    "no-verify": {
      type: "boolean",
      help: "Do not prove identities against Entra (Verified stays Unknown).",
      env: "AGENTID_NO_VERIFY",
    },
    "verify-interval": { type: "string", help: "Re-verify a working identity this often.", default: "6h" },
    "verify-retry": { type: "string", help: "Re-try a failed verification after this long.", default: "10m" },
    issuer: {
      type: "string",
      help: "Service-account issuer to trust (default: discovered from the API server).",
      env: "AGENTID_ISSUER",
    },
    "ca-file": {
      type: "string",
      multiple: true,
      help: "Extra CA bundle (PEM) trusted for Entra and Graph, e.g. a local emulator's CA; repeatable.",
      env: "AGENTID_CA_FILE",
    },
    "allowed-authority-hosts": {
      type: "string",
      multiple: true,
      help: "Authority hosts (https URLs) an AgentIdentityBlueprint with cloud Custom may name, e.g. a local emulator; comma-separated or repeated. None by default.",
      env: "AGENTID_ALLOWED_AUTHORITY_HOSTS",
    },
    "graph-client-id": {
      type: "string",
      help: "Client id of the manager's own app for Graph mode.",
      env: "AGENTID_GRAPH_CLIENT_ID",
    },
    "graph-token-file": {
      type: "string",
      help: "Workload-identity token file for the Graph credential.",
      env: "AZURE_FEDERATED_TOKEN_FILE",
    },
    "graph-client-secret-file": {
      type: "string",
      help: "Client secret file for the Graph credential (development).",
      env: "AGENTID_GRAPH_CLIENT_SECRET_FILE",
    },
    "authority-host": {
      type: "string",
      help: "Entra authority host for the Graph credential.",
      default: "https://login.microsoftonline.com",
      env: "AZURE_AUTHORITY_HOST",
    },
    "graph-url": {
      type: "string",
      help: "Microsoft Graph base URL.",
      default: "https://graph.microsoft.com",
      env: "AGENTID_GRAPH_URL",
    },
    concurrency: { type: "string", help: "Parallel reconciles.", default: "8" },
    "shutdown-grace-period": {
      type: "string",
      help: "After SIGTERM or SIGINT, exit with code 1 if stopping (draining, releasing the Lease, closing) has not finished within this long; keep it below the pod's terminationGracePeriodSeconds.",
      default: "20s",
      env: "AGENTID_SHUTDOWN_GRACE_PERIOD",
    },
    // The admission webhook (docs/webhook.md): on when --sidecar-image is given.
    ...WEBHOOK_OPTIONS,
  },
  async run(values) {
    const level = stringOption(values, "log-level") ?? "info";
    if (!isLogLevel(level))
      throw new UsageError(
        `--log-level must be one of fatal, error, warn, info, debug, trace, silent; got '${level}'`,
      );
    const concurrency = Number(stringOption(values, "concurrency"));
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
      throw new UsageError("--concurrency must be an integer from 1 to 64");
    // Every flag is checked before anything starts, so a typo costs nothing.
    const verificationPolicy = {
      intervalMs: parseDuration(stringOption(values, "verify-interval") ?? "6h", "verify-interval"),
      retryMs: parseDuration(stringOption(values, "verify-retry") ?? "10m", "verify-retry"),
    };
    const gracePeriod = stringOption(values, "shutdown-grace-period") ?? "20s";
    const graceMs = parseDuration(gracePeriod, "shutdown-grace-period");
    if (graceMs < 1 || graceMs > 3600_000)
      throw new UsageError(`--shutdown-grace-period must be from 1ms to 1h, got '${gracePeriod}'`);
    const health = {
      host: stringOption(values, "health-host") ?? "0.0.0.0",
      port: portOption(values, "health-port") ?? 8081,
    };
    const metricsListen = parseBindAddress(stringOption(values, "metrics-bind-address") ?? "127.0.0.1:8080");
    const metricsCert = stringOption(values, "metrics-cert-file");
    const metricsKey = stringOption(values, "metrics-key-file");
    if (Boolean(metricsCert) !== Boolean(metricsKey))
      throw new UsageError("--metrics-cert-file and --metrics-key-file go together");
    const issuer = stringOption(values, "issuer");
    if (issuer !== undefined && !/^https:\/\/\S+$/.test(issuer))
      throw new UsageError(`--issuer must be an https URL, got '${issuer}'`);
    const graphClientId = stringOption(values, "graph-client-id");
    const tokenFile = stringOption(values, "graph-token-file");
    const secretFile = stringOption(values, "graph-client-secret-file");
    if (graphClientId && !tokenFile && !secretFile) {
      throw new UsageError(
        "--graph-client-id needs --graph-token-file (workload identity) or --graph-client-secret-file",
      );
    }
    const caPems = readCaFiles(listOption(values, "ca-file"));
    const allowedAuthorityHosts = listOption(values, "allowed-authority-hosts");
    for (const host of allowedAuthorityHosts) {
      let url: URL | undefined;
      try {
        url = new URL(host);
      } catch {
        url = undefined;
      }
      if (url?.protocol !== "https:" || url.search || url.username)
        throw new UsageError(`--allowed-authority-hosts takes https URLs without a query, got '${host}'`);
    }
    // Checked now; the namespace (the manager's own, where the webhook's Secret lives) is known below.
    const webhookSettings = webhookSettingsFrom(values, "", allowedAuthorityHosts);
    const logger = createLogger({ name: "agentid-manager", level });
    const untuned = managerTuningWarning(process);
    if (untuned) logger.warn(untuned);
    const file = stringOption(values, "kubeconfig");
    // Not client-node's KubeConfig: its index loads every generated API model (about 55 MB resident).
    const kubeConfig = await loadKubeConfig(file ? { kubeconfig: file } : {});
    // @azure/identity is loaded only for Graph mode: it costs about 20 MB of memory.
    const credentials = graphClientId ? await import("../operator/graph-credential.ts") : undefined;
    const graph =
      graphClientId && credentials
        ? {
            baseUrl: stringOption(values, "graph-url") ?? "https://graph.microsoft.com",
            credentialFor: credentials.createGraphCredentialFactory({
              clientId: graphClientId,
              ...(tokenFile ? { tokenFile } : {}),
              ...(secretFile ? { clientSecretFile: secretFile } : {}),
              authorityHost: stringOption(values, "authority-host") ?? "https://login.microsoftonline.com",
              caPems,
            }),
            // Signing in as a blueprint (agentCreation.credential Blueprint) needs the manager's own token.
            ...(tokenFile
              ? {
                  blueprintCredentialFor: credentials.createBlueprintCredentialFactory({ tokenFile, caPems }),
                }
              : {}),
          }
        : undefined;
    const namespace = stringOption(values, "namespace");
    const { startManager } = await import("./manager.ts");
    const leaseNamespace = leaseNamespaceFrom(stringOption(values, "lease-namespace"), kubeConfig.namespace);
    const webhook = webhookSettings
      ? (await import("../webhook/component.ts")).webhookComponents({
          ...webhookSettings,
          certificates: { ...webhookSettings.certificates, namespace: leaseNamespace },
        })
      : [];
    const manager = await startManager({
      kubeConfig,
      logger,
      ...(namespace ? { namespace } : {}),
      leaseNamespace,
      leaseName: stringOption(values, "lease-name") ?? "agentid-manager",
      health,
      ...(metricsListen
        ? {
            metrics: {
              ...metricsListen,
              ...(isLoopback(metricsListen.host)
                ? {}
                : {
                    secure:
                      metricsCert && metricsKey
                        ? {
                            certPem: readFileSync(metricsCert, "utf8"),
                            keyPem: readFileSync(metricsKey, "utf8"),
                          }
                        : true,
                  }),
            },
          }
        : {}),
      verify: values["no-verify"] !== true,
      verificationPolicy,
      ...(issuer ? { issuer } : {}),
      caPems,
      allowedAuthorityHosts,
      // The namespace the webhooks leave out (with kube-system): the operator refuses identities there too.
      managerNamespace: leaseNamespace,
      ...(graph ? { graph } : {}),
      concurrency,
      components: webhook,
    });
    logger.info(
      { url: manager.url, metrics: manager.metricsUrl, identity: manager.identity },
      "manager started",
    );
    const code = await stopOnSignals({
      signals: process,
      stop: () => manager.stop(),
      logger,
      gracePeriod,
      graceMs,
      pending: () => shutdownPending(manager.pendingShutdown(), process.getActiveResourcesInfo()),
      exit: (c) => process.exit(c),
    });
    if (code !== 0) {
      logger.flush();
      return code;
    }
    logger.info("stopped");
    logger.flush();
    return 0;
  },
};
