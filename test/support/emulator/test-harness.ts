import { decodeJwt, type JWTPayload } from "jose";
import { expect } from "vitest";
import { DirectoryError } from "../../../src/emulator/directory.ts";
import { normalizeDirectory } from "../../../src/emulator/directory-validate.ts";
import { type EmulatorOptions, type RunningEmulator, startEmulator } from "../../../src/emulator/index.ts";
import { createLogger } from "../../../src/lib/log.ts";
import { startedForFile } from "../per-file.ts";
import { callJson, type HttpResult, IDS, postForm, testDirectory, trustingAgent } from "./testing.ts";

/** A started emulator with captured log lines and shortcuts for the token flows, for this folder's tests. */
export interface Harness {
  emulator: RunningEmulator;
  logLines: string[];
  tokenUrl: string;
  token(params: Record<string, string | undefined>, tenant?: string): Promise<HttpResult>;
  /** Asserts success and returns the access token. */
  accessToken(params: Record<string, string | undefined>): Promise<string>;
  /** T1: the blueprint's exchange token for an agent identity. */
  t1(agent?: string, blueprint?: string, secret?: string): Promise<string>;
  /** An agent identity's client_credentials request authenticated with T1. */
  agentParams(t1: string, agent?: string): Record<string, string>;
  /** A user token minted by the admin API (for OBO): user IDS.user, audience IDS.blueprint, unless `claims` say otherwise. */
  userToken(claims?: Record<string, unknown>): Promise<string>;
  /** Adds to the test tenant's directory through the admin API (`applications`, `grants`, ...); fails unless created. */
  addToTenant(collection: string, body: object): Promise<void>;
  close(): Promise<void>;
  dispatcher: ReturnType<typeof trustingAgent>;
}

export const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
export const EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default";

export async function startHarness(options: EmulatorOptions = {}): Promise<Harness> {
  const logLines: string[] = [];
  const logger = createLogger({
    name: "emulator",
    level: "debug",
    destination: { write: (s: string) => logLines.push(s) },
  });
  const emulator = await startEmulator({ port: 0, directory: testDirectory(), logger, ...options });
  const dispatcher = trustingAgent(emulator);
  const tokenUrl = `${emulator.url}/${IDS.tenant}/oauth2/v2.0/token`;
  const token = (params: Record<string, string | undefined>, tenant = IDS.tenant) =>
    postForm(dispatcher, `${emulator.url}/${tenant}/oauth2/v2.0/token`, params);
  const accessToken = async (params: Record<string, string | undefined>) => {
    const r = await token(params);
    if (r.status !== 200)
      throw new Error(`token request failed: ${r.status} ${String(r.json.error_description)}`);
    return String(r.json.access_token);
  };
  const t1 = (
    agent: string = IDS.agent,
    blueprint: string = IDS.blueprint,
    secret: string = IDS.blueprintSecret,
  ) =>
    accessToken({
      grant_type: "client_credentials",
      client_id: blueprint,
      client_secret: secret,
      scope: EXCHANGE_SCOPE,
      fmi_path: agent,
    });
  const agentParams = (assertion: string, agent: string = IDS.agent) => ({
    grant_type: "client_credentials",
    client_id: agent,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: assertion,
    scope: "https://graph.microsoft.com/.default",
  });
  const tenantAdmin = (path: string, body: object) =>
    callJson(dispatcher, "POST", `${emulator.url}/_emulator/tenants/${IDS.tenant}/${path}`, body);
  return {
    emulator,
    logLines,
    tokenUrl,
    token,
    accessToken,
    t1,
    agentParams,
    async userToken(claims = {}) {
      const r = await tenantAdmin("tokens/user", { userId: IDS.user, audience: IDS.blueprint, ...claims });
      if (r.status !== 200) throw new Error(`minting a user token: ${r.status} ${JSON.stringify(r.json)}`);
      return String(r.json.access_token);
    },
    async addToTenant(collection, body) {
      const r = await tenantAdmin(collection, body);
      if (r.status !== 201) throw new Error(`adding to ${collection}: ${r.status} ${JSON.stringify(r.json)}`);
    },
    dispatcher,
    async close() {
      await dispatcher.close();
      await emulator.close();
    },
  };
}

/**
 * A harness for the whole test file: started in beforeAll, closed in afterAll. What it returns reads
 * through to the harness that runs, so tests use it as a Harness.
 */
export function useHarness(options: EmulatorOptions = {}): Harness {
  return startedForFile(
    "the emulator harness",
    () => startHarness(options),
    (h) => h.close(),
  );
}

/** The message of the DirectoryError that normalizeDirectory throws for `directory`; fails if it throws none. */
export function directoryErrorOf(directory: Parameters<typeof normalizeDirectory>[0]): string {
  try {
    normalizeDirectory(directory);
  } catch (error) {
    expect(error).toBeInstanceOf(DirectoryError);
    return (error as Error).message;
  }
  throw new Error("normalizeDirectory accepted the directory");
}

export function claimsOf(token: unknown): JWTPayload & Record<string, unknown> {
  return decodeJwt(String(token)) as JWTPayload & Record<string, unknown>;
}

/** Asserts the Entra error shape and returns the AADSTS code. */
export function entraCode(result: HttpResult): number {
  const codes = result.json.error_codes;
  if (!Array.isArray(codes) || typeof codes[0] !== "number") {
    throw new Error(`not an Entra error body: ${result.status} ${JSON.stringify(result.json)}`);
  }
  return codes[0];
}
