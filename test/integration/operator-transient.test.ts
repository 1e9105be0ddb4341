import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import {
  emulatorAdmin,
  LogCapture,
  onEmulator,
  startTestEmulator,
  startTestManager,
} from "./operator-fixture.ts";
import {
  BLUEPRINT,
  condition,
  createBlueprint,
  createIdentity,
  ensureCrd,
  eventsFor,
  TENANT,
} from "./operator-support.ts";

/**
 * AADSTS50166 ("Request to External OIDC endpoint failed": Entra could not fetch the issuer's discovery
 * document) is also answered for a passing failure, e.g. a kube-apiserver too busy to answer in time. The
 * real emulator is made to fail its fetch of the API server's discovery document a few times (its
 * `issuerFetch` fault); the identity must become Ready after the transient backoff, not after
 * --verify-retry. The backoff is configured short (200 ms, doubling) and --verify-retry an hour, so the
 * test passes only if the short backoff is what retried.
 */

const cp = useControlPlane({ namespacePrefix: "optransient" });
const kube = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
const managers: RunningManager[] = [];
let logs = new LogCapture();

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(cp);
});
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
  logs = new LogCapture();
});
afterAll(async () => {
  await emu?.close();
  await kube.close();
});

const HOUR = 3_600_000;

interface Counters {
  byClient: Record<string, Record<string, number>>;
}

/** The blueprint's exchange-token requests (one per verification) the emulator has answered. */
async function verifications(): Promise<number> {
  const counters = await emulatorAdmin<Counters>(emu, "GET", "/_emulator/counters");
  return counters.byClient[BLUEPRINT]?.["client_credentials+fmi_path"] ?? 0;
}

describe("a transient AADSTS50166 from Entra", () => {
  it("is retried with the short backoff: Ready after the emulator's discovery fetch failed three times", async () => {
    const ns = cp.namespace;
    const name = "flaky-issuer";
    await createBlueprint(kube, ns, onEmulator(emu));
    await emulatorAdmin(
      emu,
      "POST",
      `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials`,
      {
        name: `transient-${ns}`,
        issuer: cp.issuerUrl,
        subject: `system:serviceaccount:${ns}:${name}`,
        audiences: ["api://AzureADTokenExchange"],
      },
    );
    await emulatorAdmin(emu, "POST", "/_emulator/counters/reset");
    await emulatorAdmin(emu, "POST", "/_emulator/faults", { count: 3, kind: "issuerFetch" });
    managers.push(
      await startTestManager(cp, emu, ns, logs, {
        verificationPolicy: { intervalMs: HOUR, retryMs: HOUR, transientRetryMs: 200 },
      }),
    );
    await createIdentity(kube, ns, name);

    await expect
      .poll(
        async () => condition(await kube.getOptional<AgentIdentity>(identityPath(ns, name)), "Ready")?.status,
        {
          message: `${name} Ready`,
        },
      )
      .toBe("True");
    const identity = await kube.get<AgentIdentity>(identityPath(ns, name));
    expect(condition(identity, "Verified")).toMatchObject({ status: "True", reason: "TokenIssued" });
    // Three refusals and the success: every fault was consumed by a verification of this identity.
    expect(await verifications()).toBe(4);
    expect(await emulatorAdmin(emu, "GET", "/_emulator/faults")).toEqual({ pending: [] });
    // The refusal was reported while it lasted, saying it is retried automatically.
    const events = await eventsFor(kube, ns, name);
    const refusal = events.find((e) => e.type === "Warning" && /AADSTS50166/.test(e.message ?? ""));
    expect(refusal?.message).toMatch(/Retrying with backoff, next in about \d+ s/);
  });
});
