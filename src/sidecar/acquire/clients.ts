import type { Logger } from "pino";
import { scrubTokens } from "../../lib/log.ts";
import type { ClientCredential } from "../credentials.ts";
import type {
  ClientAssertionCallback,
  ConfidentialClientApplication,
  Configuration,
  INetworkModule,
  Msal,
} from "./msal.ts";

export interface ClientFactoryOptions {
  /** Authority host with a trailing slash. */
  instance: string;
  networkClient: INetworkModule;
  logger: Logger;
}

/**
 * Builds msal-node clients. One per (client id, tenant): a per-request authority would make msal-node
 * reuse one tenant's metadata for another. Our own cache sits in front, so msal-node's is emptied after
 * every acquisition (see TokenService) and its internal retries are off (we retry with backoff).
 */
export function createClient(
  msal: Msal,
  options: ClientFactoryOptions,
  clientId: string,
  tenant: string,
  credential: ClientCredential | { kind: "callback"; callback: ClientAssertionCallback },
): ConfidentialClientApplication {
  const auth: Configuration["auth"] = {
    clientId,
    authority: `${options.instance}${tenant}`,
    // Listing the host skips instance discovery, which only knows Microsoft's clouds; the tenant's
    // OpenID configuration is still fetched and its issuer checked.
    knownAuthorities: [new URL(options.instance).host],
  };
  switch (credential.kind) {
    case "secret":
      auth.clientSecret = credential.clientSecret;
      break;
    case "assertion":
      auth.clientAssertion = () => credential.getAssertion();
      break;
    case "callback":
      auth.clientAssertion = credential.callback;
      break;
    case "certificate":
      auth.clientCertificate = {
        thumbprintSha256: credential.thumbprintSha256,
        privateKey: credential.privateKey,
        x5c: credential.x5c,
      };
      break;
  }
  const log = options.logger;
  const { LogLevel } = msal;
  return new msal.ConfidentialClientApplication({
    auth,
    system: {
      networkClient: options.networkClient,
      disableInternalRetries: true,
      loggerOptions: {
        piiLoggingEnabled: false,
        // Warnings are chatty ("No client info in response" on every app token); errors are kept.
        logLevel: LogLevel.Error,
        loggerCallback(level, message) {
          const text = scrubTokens(message);
          if (level === LogLevel.Error) log.error({ msal: true }, text);
          else log.warn({ msal: true }, text);
        },
      },
    },
  });
}
