import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { type Command, type OptionValues, portOption, stringOption, UsageError } from "../lib/command.ts";
import { createLogger, isLogLevel } from "../lib/log.ts";
import { DirectoryError, type DirectorySpec } from "./directory.ts";
import { loadDirectoryFile } from "./directory-file.ts";
import { startEmulator } from "./index.ts";

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  return join(env.XDG_STATE_HOME || join(home, ".local", "state"), "agentid", "emulator");
}

export const emulatorCommand: Command = {
  name: "emulator",
  summary: "Run a local Microsoft Entra (Agent ID) token service and Graph subset over HTTPS.",
  description: [
    "Serves Entra's endpoints per tenant: /{tenant}/v2.0/.well-known/openid-configuration,",
    "/{tenant}/discovery/v2.0/keys, /{tenant}/oauth2/v2.0/token, /common/discovery/instance; Graph's",
    "applications/{id}/federatedIdentityCredentials under /v1.0 and /beta; and an admin API under /_emulator.",
    "The CA that signs its HTTPS certificate is written to <state-dir>/ca.pem: trust it in clients",
    "(NODE_EXTRA_CA_CERTS, curl --cacert). Stops cleanly on SIGTERM or SIGINT.",
  ].join("\n"),
  options: {
    port: {
      type: "string",
      help: "HTTPS port (0 picks a free one).",
      default: "9443",
      env: "AGENTID_EMULATOR_PORT",
    },
    host: {
      type: "string",
      help: "Interface to listen on.",
      default: "127.0.0.1",
      env: "AGENTID_EMULATOR_HOST",
    },
    "public-host": {
      type: "string",
      help: "Host name clients use in URLs and token issuers (default: --host, or 127.0.0.1 on 0.0.0.0).",
      env: "AGENTID_EMULATOR_PUBLIC_HOST",
    },
    directory: {
      type: "string",
      help: "YAML or JSON directory file (tenants, apps, agents, users, resources, grants); empty when absent.",
      env: "AGENTID_EMULATOR_DIRECTORY",
    },
    "state-dir": {
      type: "string",
      help: "Where the CA, serving certificate and signing keys are kept (default: $XDG_STATE_HOME/agentid/emulator, else ~/.local/state/agentid/emulator).",
      env: "AGENTID_EMULATOR_STATE_DIR",
    },
    "trust-ca": {
      type: "string",
      multiple: true,
      help: "TEST SWITCH: PEM file of a private CA to trust when fetching a federated issuer's OIDC discovery and keys (repeatable); Entra trusts public roots only.",
      env: "AGENTID_EMULATOR_TRUST_CA",
    },
    "fic-propagation-seconds": {
      type: "string",
      help: "Seconds a federated credential added at run time answers AADSTS70021 before it works, as Entra's do for minutes (0 = off; npm start uses 5).",
      default: "0",
      env: "AGENTID_EMULATOR_FIC_PROPAGATION_SECONDS",
    },
    "log-level": {
      type: "string",
      help: "fatal, error, warn, info, debug, trace or silent.",
      default: "info",
      env: "AGENTID_LOG_LEVEL",
    },
  },
  async run(values: OptionValues): Promise<number> {
    const level = stringOption(values, "log-level") ?? "info";
    if (!isLogLevel(level))
      throw new UsageError(
        `--log-level must be one of fatal, error, warn, info, debug, trace, silent; got '${level}'`,
      );
    const trustFiles = trustOption(values);
    const propagation = Number(stringOption(values, "fic-propagation-seconds") ?? "0");
    if (!Number.isInteger(propagation) || propagation < 0 || propagation > 3600)
      throw new UsageError("--fic-propagation-seconds must be a whole number of seconds from 0 to 3600");
    const directoryPath = stringOption(values, "directory");
    let directory: DirectorySpec | undefined;
    const trustedCaPems: string[] = [];
    try {
      if (directoryPath) directory = await loadDirectoryFile(directoryPath);
      for (const file of trustFiles) trustedCaPems.push(await readFile(file, "utf8"));
    } catch (error) {
      if (error instanceof DirectoryError) throw new UsageError(error.message.replace(/\n\s*/g, "; "));
      throw new UsageError(`cannot read --trust-ca file: ${(error as Error).message}`);
    }
    const logger = createLogger({ name: "emulator", level });
    const emulator = await startEmulator({
      host: stringOption(values, "host") ?? "127.0.0.1",
      port: portOption(values, "port") ?? 9443,
      ...(stringOption(values, "public-host") ? { publicHost: stringOption(values, "public-host") } : {}),
      stateDir: stringOption(values, "state-dir") ?? defaultStateDir(),
      ...(directory ? { directory } : {}),
      trustedCaPems,
      settings: { federatedCredentialPropagationSeconds: propagation },
      logger,
    });
    const tenants = directory?.tenants.map((t) => t.id) ?? [];
    process.stderr.write(
      [
        `Entra emulator listening on ${emulator.url}`,
        `  CA certificate: ${emulator.caPath}   (curl --cacert, NODE_EXTRA_CA_CERTS)`,
        `  tenants: ${tenants.length > 0 ? tenants.join(", ") : "none (add one with PUT /_emulator/directory)"}`,
        ...tenants.map((t) => `  authority: ${emulator.url}/${t}`),
        "",
      ].join("\n"),
    );
    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        process.stderr.write(`Entra emulator: ${signal}, shutting down\n`);
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    await emulator.close();
    logger.flush();
    return 0;
  },
};

function trustOption(values: OptionValues): string[] {
  const raw = values["trust-ca"];
  if (raw === undefined) return [];
  return (Array.isArray(raw) ? raw : [String(raw)]).filter((s) => s.length > 0);
}
