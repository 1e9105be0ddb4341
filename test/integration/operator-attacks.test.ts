import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABEL_SERVICE_ACCOUNT_BINDING } from "../../src/api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprintSpec, AgentIdentitySpec } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { blueprintPath } from "../../src/operator/blueprint-reconciler.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import { emulatorRequests, onEmulator, startTestEmulator } from "./operator-fixture.ts";
import { useOperatorHarness } from "./operator-harness.ts";
import {
  AGENT,
  BLUEPRINT,
  blueprintBody,
  condition,
  createBlueprint,
  identityBody,
} from "./operator-support.ts";

/**
 * Each attack of the tenancy issue, tried as an attacker would: with a namespace user's credentials (the
 * built-in edit role plus the chart's agentid-identity-editor, never cluster-admin). Every attempt ends in
 * a clear condition or an API-server refusal, and the manager makes no outbound call for it: the
 * emulator (the only Entra and Graph there is) counts every request it serves, and a second emulator
 * stands in for the attacker's own token endpoint.
 */
const op = useOperatorHarness({ namespacePrefix: "attack" });
const { cp, admin, read } = op;
/** A second emulator, standing in for the attacker's own token endpoint. */
let attackerEndpoint: RunningEmulator;

beforeAll(async () => {
  attackerEndpoint = await startTestEmulator(cp);
});
afterAll(async () => {
  await attackerEndpoint?.close();
});

/** Polls until the identity's Ready condition has `status` and `reason`. */
const until = (name: string, reason: string, status = "False") =>
  op.until(
    name,
    (i) => condition(i, "Ready")?.status === status && condition(i, "Ready")?.reason === reason,
    `Ready=${status} (${reason})`,
  );

/** The manager's own requests that would reach outside the namespace's say: tokens and Secrets. */
function sensitiveRequests(m: RunningManager): Record<string, number> {
  return Object.fromEntries(
    Object.entries(m.requestCounts()).filter(
      ([k]) => k.includes("serviceaccounts/token") || k.endsWith(" secrets"),
    ),
  );
}

async function attempt(
  as: KubeClient,
  name: string,
  spec: Partial<AgentIdentitySpec> = {},
): Promise<AgentIdentity> {
  return as.create<AgentIdentity>(identityPath(cp.namespace), identityBody(cp.namespace, name, spec));
}

const graphBlueprint = (spec: Partial<AgentIdentityBlueprintSpec> = {}) =>
  createBlueprint(admin, cp.namespace, {
    ...onEmulator(op.emu),
    federation: { management: "Graph" },
    ...spec,
  });

describe("attacks by a namespace user", () => {
  it("cannot create, change or delete a blueprint, nor write an identity's status", async () => {
    const alice = await op.namespaceUser();
    await expect(alice.create(blueprintPath(), blueprintBody(`${cp.namespace}-mine`))).rejects.toMatchObject({
      status: 403,
    });
    await graphBlueprint();
    await expect(
      alice.patch(blueprintPath(cp.namespace), "merge", { spec: { admits: [{ namespaces: ["anything"] }] } }),
    ).rejects.toMatchObject({ status: 403 });
    await expect(alice.delete(blueprintPath(cp.namespace))).rejects.toMatchObject({ status: 403 });
    await op.manager({ verify: false });
    const mine = await attempt(alice, "forged", { agent: { create: { displayName: "x" } } });
    // status.agent is what the sidecar gets locked to: only the operator may write it.
    await expect(
      alice.replace(`${identityPath(cp.namespace, "forged")}/status`, {
        ...mine,
        status: { agent: { clientId: AGENT, created: true } },
      }),
    ).rejects.toMatchObject({ status: 403 });
  });

  it("a blueprint that does not admit the namespace: NamespaceNotAdmitted, no ServiceAccount, no outbound call", async () => {
    await graphBlueprint({ admits: [{ namespaces: ["someone-else"], agents: { allowed: [AGENT] } }] });
    const alice = await op.namespaceUser();
    const m = await op.manager();
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "intruder");
    const refused = await until("intruder", "NamespaceNotAdmitted");
    expect(condition(refused, "Ready")?.message).toContain(`does not admit namespace ${cp.namespace}`);
    expect(await admin.getOptional(serviceAccountPath(cp.namespace, "intruder"))).toBeUndefined();
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
    // Labelling the namespace is not theirs to do either.
    await expect(
      alice.patch(`/api/v1/namespaces/${cp.namespace}`, "merge", {
        metadata: { labels: { team: "research" } },
      }),
    ).rejects.toMatchObject({ status: 403 });
  });

  it("an identity in the manager's own namespace (never seen by the webhooks), even under an empty namespaceSelector: NamespaceExcluded, no ServiceAccount, no outbound call", async () => {
    // The blueprint admits every namespace; the manager runs in (says it runs in) the test's namespace.
    await graphBlueprint({ admits: [{ namespaceSelector: {}, agents: { allowed: [AGENT] } }] });
    const alice = await op.namespaceUser();
    const m = await op.manager({ managerNamespace: cp.namespace });
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "insider");
    const refused = await until("insider", "NamespaceExcluded");
    expect(condition(refused, "Ready")?.message).toContain("the agentid manager's own namespace");
    expect(refused.metadata.finalizers ?? []).toEqual([]);
    expect(await admin.getOptional(serviceAccountPath(cp.namespace, "insider"))).toBeUndefined();
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
  });

  it("an agent the blueprint does not allow, or a new agent where creation is off: refused, no outbound call", async () => {
    await graphBlueprint();
    const alice = await op.namespaceUser();
    const m = await op.manager();
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "other-agent", { agent: { clientId: "9f9f9f9f-1111-4222-8333-444455556666" } });
    await attempt(alice, "new-agent", { agent: { create: { displayName: "Mine" } } });
    await attempt(alice, "the-blueprint", { agent: { clientId: BLUEPRINT } });
    await until("other-agent", "AgentNotAllowed");
    await until("new-agent", "AgentCreationNotAllowed");
    await until("the-blueprint", "AgentNotAllowed");
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
  });

  it("an authority host outside the manager's allow-list: the attacker's endpoint never hears from the manager", async () => {
    // Only the platform team can write blueprints; even one of theirs pointing elsewhere is not used.
    await createBlueprint(admin, cp.namespace, {
      cloud: "Custom",
      authorityHost: `${attackerEndpoint.url}/`,
    });
    const alice = await op.namespaceUser();
    const m = await op.manager();
    const before = await emulatorRequests(attackerEndpoint);
    await attempt(alice, "exfiltrate");
    await until("exfiltrate", "AuthorityHostNotAllowed");
    await expect
      .poll(async () => {
        const bp = await admin.get<{ status?: { conditions?: Array<{ type: string; reason: string }> } }>(
          blueprintPath(cp.namespace),
        );
        return bp.status?.conditions?.find((c) => c.type === "Ready")?.reason;
      })
      .toBe("AuthorityHostNotAllowed");
    expect(await emulatorRequests(attackerEndpoint)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
  });

  it("an existing ServiceAccount that did not opt in: ServiceAccountNotOptedIn and no token minted for it", async () => {
    await createBlueprint(admin, cp.namespace, onEmulator(op.emu));
    // Another workload's account, federated elsewhere (e.g. azure-workload-identity's).
    await admin.create(serviceAccountPath(cp.namespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: {
        name: "payments",
        annotations: { "azure.workload.identity/client-id": "5b5b5b5b-1111-4222-8333-444455556666" },
      },
    });
    const alice = await op.namespaceUser();
    const m = await op.manager();
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "borrow", { serviceAccountName: "payments" });
    await until("borrow", "ServiceAccountNotOptedIn");
    // Labelled for another identity is no better.
    await admin.create(serviceAccountPath(cp.namespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "labelled", labels: { [LABEL_SERVICE_ACCOUNT_BINDING]: "someone-else" } },
    });
    await attempt(alice, "borrow-labelled", { serviceAccountName: "labelled" });
    await until("borrow-labelled", "ServiceAccountNotOptedIn");
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
    const sa = await admin.get<{ metadata: { labels?: Record<string, string>; ownerReferences?: unknown } }>(
      serviceAccountPath(cp.namespace, "payments"),
    );
    expect(sa.metadata.labels).toBeUndefined();
    expect(sa.metadata.ownerReferences).toBeUndefined();
  });

  it("a second AgentIdentity for a taken ServiceAccount: ServiceAccountTaken, the first stays Ready, no outbound call", async () => {
    await createBlueprint(admin, cp.namespace, onEmulator(op.emu));
    await op.trustOnBlueprint(`attack-${cp.namespace}`, "agent");
    const m = await op.manager();
    await admin.create(
      identityPath(cp.namespace),
      identityBody(cp.namespace, "owner", { serviceAccountName: "agent" }),
    );
    await until("owner", "Ready", "True");
    const alice = await op.namespaceUser();
    const before = await emulatorRequests(op.emu);
    const tokensBefore = sensitiveRequests(m);
    await attempt(alice, "squatter", { serviceAccountName: "agent" });
    const taken = await until("squatter", "ServiceAccountTaken");
    expect(condition(taken, "Ready")?.message).toContain("AgentIdentity owner");
    expect(condition(await read("owner"), "Ready")).toMatchObject({ status: "True" });
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual(tokensBefore);
  });

  it("a development secret the blueprint does not allow: refused before the Secret is read", async () => {
    await createBlueprint(admin, cp.namespace, onEmulator(op.emu));
    const alice = await op.namespaceUser();
    await alice.create(`/api/v1/namespaces/${cp.namespace}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "mine" },
      stringData: { secret: "not-the-blueprint-secret" },
    });
    const m = await op.manager();
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "dev", { clientSecretRef: { name: "mine", key: "secret" } });
    await until("dev", "DevelopmentSecretsNotAllowed");
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
  });

  it("unlocking the sidecar (the blueprint's own token, any fmi_path) where the blueprint does not allow it: refused, no outbound call", async () => {
    await createBlueprint(admin, cp.namespace, onEmulator(op.emu));
    const alice = await op.namespaceUser();
    const m = await op.manager();
    const before = await emulatorRequests(op.emu);
    await attempt(alice, "unlocked", { sidecar: { allowBlueprintToken: true, allowFmiPathOverride: true } });
    const refused = await until("unlocked", "SidecarWideningNotAllowed");
    expect(condition(refused, "Ready")?.message).toContain("spec.admits rules' sidecar");
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(sensitiveRequests(m)).toEqual({});
  });
});
