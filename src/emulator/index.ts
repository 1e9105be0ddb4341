import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyError } from "fastify";
import { createLogger, type Logger, scrubTokens } from "../lib/log.ts";
import { DEFAULT_SETTINGS, ReplayCache, type Settings, type TokenContext } from "./context.ts";
import { DirectoryError, type DirectorySpec } from "./directory.ts";
import { EntraError, errorBody } from "./errors.ts";
import { FaultQueue, RequestCounters } from "./faults.ts";
import { FederationVerifier } from "./federation.ts";
import { KeyStore } from "./keys.ts";
import { registerKeyVaultRoutes } from "./keyvault.ts";
import { RefreshTokenStore } from "./refresh-tokens.ts";
import { problem, registerAdminRoutes } from "./routes/admin.ts";
import { registerGraphRoutes } from "./routes/graph.ts";
import { registerGraphAgentRoutes } from "./routes/graph-agents.ts";
import { registerMetadataRoutes } from "./routes/metadata.ts";
import { registerV1MetadataRoutes } from "./routes/metadata-v1.ts";
import { registerTokenRoute } from "./routes/token.ts";
import { DirectoryStore } from "./store.ts";
import { ensureServingMaterial } from "./tls.ts";

export type { DirectorySpec } from "./directory.ts";

export interface EmulatorOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** Default 9443; 0 picks a free port. */
  port?: number;
  /** Host name clients use in URLs (issuer, endpoints); default `host`, or 127.0.0.1 when listening on all interfaces. */
  publicHost?: string;
  /** CA, serving certificate and signing keys are kept here; default a new temporary directory. */
  stateDir?: string;
  directory?: DirectorySpec;
  /**
   * TEST SWITCH. Extra CAs trusted when fetching a federated issuer's discovery document and JWKS. Entra
   * itself fetches them over the public internet with public roots only; a local kube-apiserver's own CA
   * is trusted here so that tests and the playground can federate with it. Logged at start when set.
   */
  trustedCaPems?: string[];
  /**
   * How long fetching a federated issuer's discovery document and JWKS may take (default 5 s). A bench
   * on a busy shared machine gives a loaded kube-apiserver longer, so a slow answer is not an AADSTS50166.
   */
  discoveryTimeoutMs?: number;
  settings?: Partial<Settings>;
  logger?: Logger;
  /** The clock (seconds since the epoch); tests pass their own to step through time-based behaviour. */
  now?: () => number;
}

export interface RunningEmulator {
  /** `https://<host>:<port>`; the authority of tenant T is `${url}/${T}`. */
  url: string;
  caPem: string;
  caPath: string;
  port: number;
  stateDir: string;
  close(): Promise<void>;
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const host = options.host ?? "127.0.0.1";
  const publicHost = options.publicHost ?? (host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host);
  // A state directory made here is the emulator's own and goes away on close.
  const ownStateDir = options.stateDir === undefined;
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), "agentid-emulator-")));
  const logger = options.logger ?? createLogger({ name: "emulator" });
  const tls = await ensureServingMaterial(stateDir, [publicHost]);
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const store = new DirectoryStore(options.directory, now);
  const faults = new FaultQueue();
  const federation = new FederationVerifier(options.trustedCaPems ?? [], options.discoveryTimeoutMs, () =>
    faults.takeIssuerFetch(),
  );
  const counters = new RequestCounters();

  const app = Fastify({
    https: { key: tls.keyPem, cert: tls.certPem },
    // Request logging is off: URLs and headers of an OAuth server carry credentials. Handlers log events.
    logger: false,
    forceCloseConnections: true,
  });
  let variation = 0;
  const ctx: TokenContext = {
    store,
    keys: await KeyStore.open(stateDir),
    federation,
    refreshTokens: new RefreshTokenStore(),
    replay: new ReplayCache(),
    settings: { ...DEFAULT_SETTINGS, ...options.settings },
    baseUrl: "", // set once the port is known
    logger,
    now,
    nextVariation: () => variation++,
  };

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const isToken = request.url.includes("/oauth2/v2.0/token");
    if (error instanceof DirectoryError) return problem(reply, 400, "Bad Request", error.message);
    if (error.validation || error.statusCode === 400 || error.statusCode === 415) {
      if (isToken) {
        const err = new EntraError(
          "invalid_request",
          900144,
          `The request body must be application/x-www-form-urlencoded with string parameters (${error.message}).`,
        );
        return reply.code(400).send(errorBody(err, ctx.baseUrl));
      }
      return problem(reply, error.statusCode ?? 400, "Bad Request", error.message);
    }
    logger.error(
      { err: { message: scrubTokens(error.message) }, url: request.url.split("?")[0] },
      "emulator internal error",
    );
    return problem(reply, 500, "Internal Server Error", "the emulator failed to handle this request");
  });
  app.setNotFoundHandler((request, reply) =>
    problem(reply, 404, "Not Found", `no route ${request.method} ${request.url.split("?")[0]}`),
  );

  app.addHook("onRequest", async (request) => {
    const path = request.url.split("?")[0] ?? "";
    if (!path.startsWith("/_emulator/")) counters.recordRequest(request.method, path);
  });
  registerMetadataRoutes(app, ctx);
  registerV1MetadataRoutes(app, ctx);
  registerKeyVaultRoutes(app, ctx);
  registerTokenRoute(app, ctx, faults, counters);
  registerAdminRoutes(app, ctx, faults, counters);
  registerGraphRoutes(app, ctx);
  registerGraphAgentRoutes(app, ctx);

  await app.listen({ host, port: options.port ?? 9443 });
  const port = (app.server.address() as AddressInfo).port;
  const url = `https://${publicHost.includes(":") ? `[${publicHost}]` : publicHost}:${port}`;
  ctx.baseUrl = url;
  logger.info(
    { url, caPath: tls.caPath, tenants: store.spec.tenants.map((t) => t.id) },
    "Entra emulator listening",
  );
  if ((options.trustedCaPems ?? []).length > 0)
    logger.warn(
      { extraCas: options.trustedCaPems?.length },
      "test switch: federated issuers signed by private CAs are trusted (Entra trusts public roots only)",
    );

  let closed = false;
  return {
    url,
    caPem: tls.caPem,
    caPath: tls.caPath,
    port,
    stateDir,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await federation.close();
      if (ownStateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}
