import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FINALIZER } from "../../src/api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprintSpec } from "../../src/api/types.ts";
import { createBlueprintCredentialFactory } from "../../src/operator/graph-credential.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import {
  agentsOf,
  BLUEPRINT_SECRET,
  blueprintCredentials,
  emulatorAdmin,
  emulatorRequests,
  FOREIGN_BLUEPRINT,
  graphCredentialAs,
  OPERATOR_APP,
  OPERATOR_SECRET,
  onEmulator,
} from "./operator-fixture.ts";
import { JWT, useOperatorHarness } from "./operator-harness.ts";
import {
  AGENT,
  BLUEPRINT,
  condition,
  createBlueprint,
  createIdentity,
  eventsFor,
  TENANT,
} from "./operator-support.ts";

/**
 * The agent identity lifecycle against the emulator's Graph: `agent.create` makes the operator create the
 * agent identity under its blueprint, record it in status, lock verification to it, and delete it with the
 * AgentIdentity (deletionPolicy Delete) or leave it (Retain).
 */
const op = useOperatorHarness({ namespacePrefix: "agents", logsMustNotHold: [JWT, BLUEPRINT_SECRET] });
const { cp, admin: kube, read, until } = op;

const creatingBlueprint = (spec: Partial<AgentIdentityBlueprintSpec> = {}) =>
  createBlueprint(kube, cp.namespace, {
    ...onEmulator(op.emu),
    federation: { management: "Graph" },
    admits: [{ namespaces: [cp.namespace], agents: { create: true } }],
    ...spec,
  });

const ready = (i: AgentIdentity | undefined) => condition(i, "Ready")?.status === "True";
const verified = (i: AgentIdentity | undefined) => condition(i, "Verified")?.status === "True";

describe("agent identities the operator creates", () => {
  it("creates the agent under the blueprint, records it, verifies as it, and deletes it with the AgentIdentity", async () => {
    await creatingBlueprint();
    await op.manager();
    const before = (await agentsOf(op.emu)).length;
    await createIdentity(kube, cp.namespace, "made", {
      agent: { create: { displayName: "Made by the operator" } },
    });
    const done = await until("made", (i) => ready(i) && verified(i), "Ready and Verified");
    const agent = done.status?.agent;
    expect(agent).toMatchObject({ created: true, clientId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(agent?.clientId).not.toBe(AGENT);
    expect(done.metadata.finalizers).toContain(FINALIZER);
    expect(condition(done, "Verified")?.message).toContain(agent?.clientId);
    const inEntra = (await agentsOf(op.emu)).find((a) => a.appId === agent?.clientId);
    expect(inEntra).toMatchObject({
      displayName: "Made by the operator",
      servicePrincipalId: agent?.objectId,
    });
    expect(await agentsOf(op.emu)).toHaveLength(before + 1);
    // Exactly one agent, however often it is reconciled.
    await kube.patch(identityPath(cp.namespace, "made"), "merge", {
      metadata: { annotations: { nudge: "1" } },
    });
    await until("made", ready, "still Ready");
    expect(await agentsOf(op.emu)).toHaveLength(before + 1);

    await kube.delete(identityPath(cp.namespace, "made"));
    await expect.poll(() => read("made"), { message: "the AgentIdentity to be gone" }).toBeUndefined();
    expect((await agentsOf(op.emu)).find((a) => a.appId === agent?.clientId)).toBeUndefined();
    expect((await blueprintCredentials(op.emu)).map((c) => c.subject)).not.toContain(
      `system:serviceaccount:${cp.namespace}:made`,
    );
  });

  it("adopts the agent a crashed manager created but never recorded, instead of creating a second one", async () => {
    await creatingBlueprint();
    // The AgentIdentity exists while no manager runs: its uid is what the marker is derived from.
    const identity = await createIdentity(kube, cp.namespace, "crashed", {
      agent: { create: { displayName: "Crashed" } },
    });
    const uid = identity.metadata.uid ?? "";
    expect(uid).not.toBe("");
    // What a manager that died between Graph's answer and the status write left behind: an agent under
    // the blueprint, created by the operator's app, tagged with the marker; status records nothing.
    const orphan = "0a0b0c0d-1111-4222-8333-abcdefabcdef";
    await emulatorAdmin(op.emu, "POST", `/_emulator/tenants/${TENANT}/agentIdentities`, {
      appId: orphan,
      displayName: "Crashed",
      blueprintAppId: BLUEPRINT,
      createdByAppId: OPERATOR_APP,
      tags: [`agentid.io/agentidentity-uid:${uid}`],
    });
    // A marker of another AgentIdentity (another uid) is not this one's.
    await emulatorAdmin(op.emu, "POST", `/_emulator/tenants/${TENANT}/agentIdentities`, {
      appId: "0a0b0c0d-2222-4222-8333-abcdefabcdef",
      displayName: "Someone else's",
      blueprintAppId: BLUEPRINT,
      tags: ["agentid.io/agentidentity-uid:00000000-0000-4000-8000-000000000000"],
    });
    const before = (await agentsOf(op.emu)).length;
    expect((await read("crashed"))?.status?.agent).toBeUndefined();

    await op.manager();
    const done = await until("crashed", ready, "Ready");
    expect(done.status?.agent).toMatchObject({ clientId: orphan, objectId: orphan, created: true });
    expect(await agentsOf(op.emu)).toHaveLength(before);
    expect((await eventsFor(kube, cp.namespace, "crashed")).map((e) => e.reason)).toContain("AgentAdopted");

    // It is the identity's own agent now: deleting the identity deletes it.
    await kube.delete(identityPath(cp.namespace, "crashed"));
    await expect.poll(() => read("crashed")).toBeUndefined();
    expect((await agentsOf(op.emu)).find((a) => a.appId === orphan)).toBeUndefined();
  });

  it("marks the agents it creates with the AgentIdentity's uid", async () => {
    await creatingBlueprint();
    await op.manager();
    const identity = await createIdentity(kube, cp.namespace, "marked", {
      agent: { create: { displayName: "Marked" } },
    });
    const done = await until("marked", (i) => Boolean(i?.status?.agent?.created), "an agent recorded");
    const directory = await emulatorAdmin<{
      tenants: Array<{ id: string; agentIdentities?: Array<{ appId: string; tags?: string[] }> }>;
    }>(op.emu, "GET", "/_emulator/directory");
    const stored = directory.tenants
      .find((t) => t.id === TENANT)
      ?.agentIdentities?.find((a) => a.appId === done.status?.agent?.clientId);
    expect(stored?.tags).toEqual([`agentid.io/agentidentity-uid:${identity.metadata.uid}`]);
  });

  it("keeps the agent in Entra with deletionPolicy Retain", async () => {
    await creatingBlueprint();
    await op.manager();
    await createIdentity(kube, cp.namespace, "kept", {
      agent: { create: { displayName: "Kept" }, deletionPolicy: "Retain" },
    });
    const done = await until("kept", ready, "Ready");
    const clientId = done.status?.agent?.clientId;
    await kube.delete(identityPath(cp.namespace, "kept"));
    await expect.poll(() => read("kept")).toBeUndefined();
    expect((await agentsOf(op.emu)).find((a) => a.appId === clientId)).toBeDefined();
    expect((await eventsFor(kube, cp.namespace, "kept")).map((e) => e.reason)).toContain("AgentRetained");
  });

  it("signs in as the blueprint for AgentIdentity.CreateAsManager (agentCreation.credential Blueprint)", async () => {
    await creatingBlueprint({ agentCreation: { credential: "Blueprint" } });
    // The manager's own ServiceAccount token, trusted by the blueprint through a federated credential.
    await kube.create(serviceAccountPath(cp.namespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "agentid-manager" },
    });
    const token = await kube.create<{ status: { token: string } }>(
      `${serviceAccountPath(cp.namespace, "agentid-manager")}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { audiences: ["api://AzureADTokenExchange"], expirationSeconds: 3600 },
      },
    );
    const tokenFile = join(mkdtempSync(join(tmpdir(), "agentid-agents-test-")), "token");
    writeFileSync(tokenFile, token.status.token);
    await op.trustOnBlueprint(`manager-${cp.namespace}`, "agentid-manager");
    await op.manager({
      graph: {
        baseUrl: op.emu.url,
        credentialFor: graphCredentialAs(op.emu, OPERATOR_APP, OPERATOR_SECRET),
        blueprintCredentialFor: createBlueprintCredentialFactory({ tokenFile, caPems: [op.emu.caPem] }),
      },
    });
    await createIdentity(kube, cp.namespace, "self-made", {
      agent: { create: { displayName: "Self made" } },
    });
    const done = await until("self-made", (i) => Boolean(i?.status?.agent?.created), "an agent recorded");
    const created = (await agentsOf(op.emu)).find((a) => a.appId === done.status?.agent?.clientId);
    expect(created).toBeDefined();
    const directory = await emulatorAdmin<{
      tenants: Array<{ id: string; agentIdentities?: Array<{ appId: string; createdByAppId?: string }> }>;
    }>(op.emu, "GET", "/_emulator/directory");
    const record = directory.tenants
      .find((t) => t.id === TENANT)
      ?.agentIdentities?.find((a) => a.appId === created?.appId);
    expect(record?.createdByAppId).toBe(BLUEPRINT);
  });

  it("a Graph refusal to create becomes a condition and is not retried until the spec changes", async () => {
    // The "manager" here signs in as an application whose only permission is CreateAsManager for its own
    // blueprint, and this blueprint is another one: Graph answers 403.
    await creatingBlueprint({ clientId: FOREIGN_BLUEPRINT });
    const running = await op.manager({
      resyncIntervalMs: 1000,
      graph: { baseUrl: op.emu.url, credentialFor: graphCredentialAs(op.emu, BLUEPRINT, BLUEPRINT_SECRET) },
    });
    const before = await emulatorRequests(op.emu);
    await createIdentity(kube, cp.namespace, "refused", { agent: { create: { displayName: "Refused" } } });
    const refused = await until("refused", (i) => condition(i, "Ready")?.status === "False", "Ready=False");
    expect(condition(refused, "Ready")).toMatchObject({ reason: "AgentCreationAccessDenied" });
    expect(condition(refused, "Ready")?.message).toContain("AgentIdentity.Create.All");
    expect(refused.status?.agent).toBeUndefined();
    const afterRefusal = await emulatorRequests(op.emu);
    expect(afterRefusal).toBeGreaterThan(before);
    const reconciles = async () =>
      (await running.metrics.registry.getSingleMetric("agentid_reconciles_total")?.get())?.values.reduce(
        (n, v) => n + v.value,
        0,
      ) ?? 0;
    const start = await reconciles();
    await expect.poll(reconciles, { timeout: 20_000 }).toBeGreaterThanOrEqual(start + 3);
    expect(await emulatorRequests(op.emu)).toBe(afterRefusal);
    expect(await agentsOf(op.emu, FOREIGN_BLUEPRINT)).toEqual([]);
  });
});
