import { createServer, type IncomingMessage, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { decodeJwt, type JWTPayload } from "jose";
import { Agent, fetch as undiciFetch } from "undici";
import { type RunningEmulator, startEmulator } from "../../src/emulator/index.ts";
import { createLogger } from "../../src/lib/log.ts";
import { type RunningSidecar, type StartOptions, startSidecar } from "../../src/sidecar/start.ts";
import { IDS, testDirectory } from "../support/emulator/testing.ts";

export { IDS };

export interface Emu {
  emulator: RunningEmulator;
  dispatcher: Agent;
  admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  counters(): Promise<{ total: number; byClient: Record<string, Record<string, number>> }>;
  resetCounters(): Promise<void>;
  /** A user token minted by the emulator (for OBO), audience the blueprint by default. */
  userToken(options?: {
    audience?: string;
    scopes?: string[];
    lifetimeSeconds?: number;
    userId?: string;
  }): Promise<string>;
  close(): Promise<void>;
}

export async function startEmu(options: { trustedCaPems?: string[] } = {}): Promise<Emu> {
  const emulator = await startEmulator({
    port: 0,
    ...options,
    directory: testDirectory(),
    logger: createLogger({ name: "emulator", level: "silent" }),
  });
  const dispatcher = new Agent({ connect: { ca: emulator.caPem } });
  async function admin<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await undiciFetch(`${emulator.url}/_emulator/${path}`, {
      method,
      dispatcher,
      ...(body !== undefined
        ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } }
        : {}),
    });
    const text = await response.text();
    if (response.status >= 400)
      throw new Error(`emulator admin ${method} ${path}: ${response.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as T;
  }
  return {
    emulator,
    dispatcher,
    admin,
    counters: () => admin("GET", "counters"),
    resetCounters: async () => {
      await admin("POST", "counters/reset");
    },
    userToken: async (o = {}) =>
      (
        await admin<{ access_token: string }>("POST", `tenants/${IDS.tenant}/tokens/user`, {
          userId: o.userId ?? IDS.user,
          audience: o.audience ?? `api://${IDS.blueprint}`,
          ...(o.scopes ? { scopes: o.scopes } : {}),
          ...(o.lifetimeSeconds !== undefined ? { lifetimeSeconds: o.lifetimeSeconds } : {}),
        })
      ).access_token,
    close: async () => {
      await dispatcher.close();
      await emulator.close();
    },
  };
}

/** Microsoft's variable names for a sidecar whose blueprint authenticates with its client secret. */
export function baseEnv(emu: Emu, extra: Record<string, string> = {}): Record<string, string> {
  return {
    AzureAd__Instance: `${emu.emulator.url}/`,
    AzureAd__TenantId: IDS.tenant,
    AzureAd__ClientId: IDS.blueprint,
    AzureAd__ClientCredentials__0__SourceType: "ClientSecret",
    AzureAd__ClientCredentials__0__ClientSecret: IDS.blueprintSecret,
    Kestrel__Endpoints__Http__Url: "http://127.0.0.1:0",
    ...extra,
  };
}

export interface TestSidecar {
  sidecar: RunningSidecar;
  url: string;
  logs: string[];
  close(): Promise<void>;
}

export async function startTestSidecar(
  emu: Emu,
  env: Record<string, string>,
  options: Partial<StartOptions> = {},
): Promise<TestSidecar> {
  const logs: string[] = [];
  const logger = createLogger({
    name: "sidecar",
    level: "debug",
    destination: { write: (s: string) => logs.push(s) },
  });
  const sidecar = await startSidecar({
    env,
    logger,
    extraCaPem: emu.emulator.caPem,
    ...options,
  });
  return { sidecar, url: sidecar.url, logs, close: () => sidecar.close() };
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
}

export async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** The access token of an `{authorizationHeader}` answer, decoded. */
export function claimsOf(answer: Answer): JWTPayload & Record<string, unknown> {
  const header = String(answer.json.authorizationHeader ?? "");
  if (!header.startsWith("Bearer ")) throw new Error(`not a bearer header: ${answer.status} ${answer.text}`);
  return decodeJwt(header.slice(7));
}

/** The client a token was issued to: `azp` in v2 tokens, `appid` in v1 ones (Graph's, as Entra issues them). */
export function clientOf(answer: Answer): unknown {
  const claims = claimsOf(answer);
  return claims.azp ?? claims.appid;
}

export function tokenOf(answer: Answer): string {
  return String(answer.json.authorizationHeader ?? "").slice(7);
}

/** A plain HTTP downstream API that echoes what it received, with a few scripted behaviours. */
export interface Downstream {
  url: string;
  requests: { method: string; url: string; headers: IncomingMessage["headers"]; body: string }[];
  close(): Promise<void>;
}

export async function startDownstream(): Promise<Downstream> {
  const requests: Downstream["requests"] = [];
  let claimsChallenged = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      const path = (req.url ?? "").split("?")[0];
      if (path === "/status/202") {
        res.writeHead(202, { "content-type": "text/plain", "x-other": "not-a-content-header" });
        res.end("accepted");
      } else if (path === "/redirect") {
        res.writeHead(302, { location: "/echo" });
        res.end();
      } else if (path === "/redirect-to") {
        // ?status=307&to=<url>: a redirect of any kind to anywhere.
        const query = new URL(req.url ?? "", "http://downstream").searchParams;
        res.writeHead(Number(query.get("status") ?? 302), { location: query.get("to") ?? "/echo" });
        res.end();
      } else if (path === "/claims") {
        if (!claimsChallenged) {
          claimsChallenged = true;
          const claims = Buffer.from('{"access_token":{"nbf":{"essential":true,"value":"1"}}}').toString(
            "base64",
          );
          res.writeHead(401, {
            "www-authenticate": `Bearer error="insufficient_claims", claims="${claims}"`,
          });
          res.end();
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end('{"ok":true}');
        }
      } else if (path === "/slow") {
        setTimeout(() => {
          res.writeHead(200);
          res.end("late");
        }, 3000);
      } else {
        res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
        res.end(JSON.stringify({ method: req.method, url: req.url, body }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A TCP port free on loopback right now, for a process that must be told its port up front. */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
