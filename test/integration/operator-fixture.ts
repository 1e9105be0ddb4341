import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Agent, request } from "undici";
import { type RunningEmulator, startEmulator } from "../../src/emulator/index.ts";
import { createLogger, type Logger } from "../../src/lib/log.ts";
import { type ManagerOptions, type RunningManager, startManager } from "../../src/manager/manager.ts";
import { createGraphCredentialFactory } from "../../src/operator/graph-credential.ts";
import type { ConnectedControlPlane } from "../support/controlplane.ts";
import { AGENT, BLUEPRINT, TENANT } from "./operator-support.ts";

/** The emulator and manager set-up the operator's integration tests share (not a test file). */

export const OPERATOR_APP = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
export const BLUEPRINT_SECRET = "blueprint-secret-for-tests-only";
/** A second blueprint that already has Graph's maximum of 20 federated credentials. */
export const FULL_BLUEPRINT = "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
/** A blueprint the operator's application does not own: Application.ReadWrite.OwnedBy does not reach it. */
export const FOREIGN_BLUEPRINT = "8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a";
/**
 * The operator's Graph permissions: owner-scoped credential management, agent lookup (by its marker tag,
 * before creating), creation and deletion.
 */
export const OPERATOR_ROLES = [
  "Application.ReadWrite.OwnedBy",
  "AgentIdentity.Read.All",
  "AgentIdentity.Create.All",
  "AgentIdentity.DeleteRestore.All",
];
export const OPERATOR_SECRET = "operator-secret-for-tests-only";

export async function startTestEmulator(
  cp: ConnectedControlPlane,
  /** Where the emulator logs; silent when absent. */
  logger: Logger = createLogger({ name: "emulator", level: "silent" }),
): Promise<RunningEmulator> {
  return startEmulator({
    port: 0,
    // The emulator fetches the local API server's discovery document and JWKS over HTTPS.
    trustedCaPems: [cp.caPem],
    logger,
    directory: {
      tenants: [
        {
          id: TENANT,
          applications: [
            {
              appId: BLUEPRINT,
              kind: "agentIdentityBlueprint",
              displayName: "Test blueprint",
              clientSecrets: [{ value: BLUEPRINT_SECRET }],
              owners: [OPERATOR_APP],
            },
            {
              appId: FOREIGN_BLUEPRINT,
              kind: "agentIdentityBlueprint",
              displayName: "A blueprint the operator does not own",
            },
            {
              appId: OPERATOR_APP,
              displayName: "agentid operator",
              clientSecrets: [{ value: OPERATOR_SECRET }],
            },
            {
              appId: FULL_BLUEPRINT,
              kind: "agentIdentityBlueprint",
              displayName: "Blueprint at the limit",
              owners: [OPERATOR_APP],
              federatedIdentityCredentials: Array.from({ length: 20 }, (_, i) => ({
                name: `existing-${i}`,
                issuer: "https://issuer.example/",
                subject: `system:serviceaccount:other:sa-${i}`,
                audiences: ["api://AzureADTokenExchange"],
              })),
            },
          ],
          agentIdentities: [{ appId: AGENT, blueprintAppId: BLUEPRINT, displayName: "Test agent" }],
          resources: [
            {
              appId: "00000003-0000-0000-c000-000000000000",
              identifierUris: ["https://graph.microsoft.com"],
              audience: "https://graph.microsoft.com",
              appRoles: [...OPERATOR_ROLES, "AgentIdentity.CreateAsManager"],
            },
          ],
          grants: [
            {
              type: "application",
              clientAppId: OPERATOR_APP,
              resource: "https://graph.microsoft.com",
              roles: OPERATOR_ROLES,
            },
            {
              // The blueprint may create its own agents (agentCreation.credential Blueprint).
              type: "application",
              clientAppId: BLUEPRINT,
              resource: "https://graph.microsoft.com",
              roles: ["AgentIdentity.CreateAsManager"],
            },
          ],
        },
      ],
    },
  });
}

export interface EmulatorCredential {
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

/** Calls the emulator's admin API. */
export async function emulatorAdmin<T>(
  emu: RunningEmulator,
  method: "GET" | "POST" | "PUT" | "DELETE",
  path: string,
  body?: unknown,
): Promise<T> {
  const agent = new Agent({ connect: { ca: emu.caPem } });
  try {
    const res = await request(`${emu.url}${path}`, {
      method,
      dispatcher: agent,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : null,
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  } finally {
    await agent.close();
  }
}

/** A blueprint spec on the emulator's cloud (Custom, allow-listed by startTestManager). */
export function onEmulator(emu: RunningEmulator): { cloud: "Custom"; authorityHost: string } {
  return { cloud: "Custom", authorityHost: `${emu.url}/` };
}

/** Every request the emulator served (token, metadata, Graph), for "no outbound call" proofs. */
export async function emulatorRequests(emu: RunningEmulator): Promise<number> {
  const counters = await emulatorAdmin<{ requests: { total: number } }>(emu, "GET", "/_emulator/counters");
  return counters.requests.total;
}

/**
 * The emulator's request count once the manager has stopped calling it: an identity that just became
 * Ready may still be reconciled once more (its ServiceAccount's or its own status's watch event), and
 * in Graph mode each reconcile reads the blueprint's credentials. Nothing signals "no further call", so
 * this waits until the count has not moved for `quietMs`.
 */
export async function settledEmulatorRequests(emu: RunningEmulator, quietMs = 500): Promise<number> {
  let last = await emulatorRequests(emu);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    const now = await emulatorRequests(emu);
    if (now === last) return now;
    last = now;
  }
  throw new Error(`the emulator kept receiving requests for ${(40 * quietMs) / 1000} s`);
}

/** The agent identities the emulator's directory holds for a blueprint. */
export async function agentsOf(
  emu: RunningEmulator,
  blueprint = BLUEPRINT,
): Promise<Array<{ appId: string; servicePrincipalId: string; displayName?: string }>> {
  const directory = await emulatorAdmin<{
    tenants: Array<{
      id: string;
      agentIdentities?: Array<{
        appId: string;
        servicePrincipalId: string;
        displayName?: string;
        blueprintAppId: string;
      }>;
    }>;
  }>(emu, "GET", "/_emulator/directory");
  return (directory.tenants.find((t) => t.id === TENANT)?.agentIdentities ?? []).filter(
    (a) => a.blueprintAppId === blueprint,
  );
}

export async function blueprintCredentials(
  emu: RunningEmulator,
  appId = BLUEPRINT,
): Promise<EmulatorCredential[]> {
  const directory = await emulatorAdmin<{
    tenants: Array<{
      id: string;
      applications?: Array<{ appId: string; federatedIdentityCredentials?: EmulatorCredential[] }>;
    }>;
  }>(emu, "GET", "/_emulator/directory");
  const app = directory.tenants.find((t) => t.id === TENANT)?.applications?.find((a) => a.appId === appId);
  return app?.federatedIdentityCredentials ?? [];
}

/** Captures every log line a manager writes, to prove no token ever reaches them. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.lines.push(chunk.toString());
    done();
  }
  text(): string {
    return this.lines.join("");
  }
}

/** A Graph credential factory for an app the emulator knows, e.g. one without Graph permissions. */
export function graphCredentialAs(emu: RunningEmulator, clientId: string, secret: string) {
  const dir = mkdtempSync(join(tmpdir(), "agentid-operator-test-"));
  const secretFile = join(dir, "graph-secret");
  writeFileSync(secretFile, secret);
  return createGraphCredentialFactory({
    clientId,
    clientSecretFile: secretFile,
    authorityHost: emu.url,
    caPems: [emu.caPem],
  });
}

export async function startTestManager(
  cp: ConnectedControlPlane,
  emu: RunningEmulator,
  namespace: string,
  logs: LogCapture,
  extra: Partial<ManagerOptions> = {},
): Promise<RunningManager> {
  return startManager({
    kubeConfig: cp.kubeConfig,
    logger: createLogger({ name: "manager", level: "trace", destination: logs }),
    namespace,
    leaseNamespace: namespace,
    leaseDurationSeconds: 4,
    renewDeadlineSeconds: 3,
    retryPeriodSeconds: 1,
    health: { host: "127.0.0.1", port: 0 },
    metrics: { host: "127.0.0.1", port: 0 },
    caPems: [emu.caPem],
    allowedAuthorityHosts: [emu.url],
    verificationPolicy: { intervalMs: 3_600_000, retryMs: 3_600_000 },
    graphPropagationMs: 200,
    graph: { baseUrl: emu.url, credentialFor: graphCredentialAs(emu, OPERATOR_APP, OPERATOR_SECRET) },
    ...extra,
  });
}
