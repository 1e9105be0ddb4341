import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { FINALIZER } from "../../src/api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprintSpec, AgentIdentitySpec } from "../../src/api/types.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import { blueprintPath } from "../../src/operator/blueprint-reconciler.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import {
  agentsOf,
  BLUEPRINT_SECRET,
  blueprintCredentials,
  emulatorAdmin,
  emulatorRequests,
  OPERATOR_APP,
  onEmulator,
} from "./operator-fixture.ts";
import { JWT, useOperatorHarness } from "./operator-harness.ts";
import {
  AGENT,
  BLUEPRINT,
  condition,
  createBlueprint,
  eventsFor,
  identityBody,
  TENANT,
} from "./operator-support.ts";

/**
 * Revocation in Graph mode: the operator writes a blueprint credential only for identities the blueprint
 * admits, so when the platform team stops admitting one (namespace, agent) or the blueprint moves to
 * another application or goes away, the credential the operator wrote goes too, at once, not on deletion.
 * Identities are written as a namespace user (edit + agentid-identity-editor), blueprints as the platform
 * admin; the emulator is the only Graph there is, and what it holds is read back from its directory.
 */
const op = useOperatorHarness({
  namespacePrefix: "revoke",
  // No token ever reaches the logs, revocation included.
  logsMustNotHold: [JWT],
});
const { cp, admin, read, until } = op;

const graphBlueprint = (spec: Partial<AgentIdentityBlueprintSpec> = {}) =>
  createBlueprint(admin, cp.namespace, {
    ...onEmulator(op.emu),
    federation: { management: "Graph" },
    ...spec,
  });

const ready = (i: AgentIdentity | undefined) => condition(i, "Ready")?.status === "True";
const refusedWith = (reason: string) => (i: AgentIdentity | undefined) =>
  condition(i, "Ready")?.status === "False" && condition(i, "Ready")?.reason === reason;

/** The credentials an application holds for one ServiceAccount of the test's namespace. */
async function trusting(serviceAccount: string, app = BLUEPRINT) {
  const subject = `system:serviceaccount:${cp.namespace}:${serviceAccount}`;
  return (await blueprintCredentials(op.emu, app)).filter((c) => c.subject === subject);
}

async function create(as: KubeClient, name: string, spec: Partial<AgentIdentitySpec> = {}) {
  return as.create<AgentIdentity>(identityPath(cp.namespace), identityBody(cp.namespace, name, spec));
}

describe("revoking the credentials of identities a blueprint no longer admits", () => {
  it("un-admitting the namespace removes the credential at once; the refused identity calls nothing else; re-admission writes it again", async () => {
    await graphBlueprint();
    const alice = await op.namespaceUser();
    await op.manager({ verify: false });
    await create(alice, "agent");
    const admitted = await until("agent", ready, "Ready");
    expect(await trusting("agent")).toHaveLength(1);
    expect(admitted.metadata.finalizers).toContain(FINALIZER);
    expect(admitted.status?.federatedCredential?.blueprint).toEqual({
      name: cp.namespace,
      tenantId: TENANT,
      clientId: BLUEPRINT,
    });

    await admin.patch(blueprintPath(cp.namespace), "merge", {
      spec: { admits: [{ namespaces: ["someone-else"] }] },
    });
    const refused = await until("agent", refusedWith("NamespaceNotAdmitted"), "refused");
    expect(await trusting("agent")).toEqual([]);
    expect(condition(refused, "Ready")?.message).toContain(`does not admit namespace ${cp.namespace}`);
    expect(condition(refused, "Ready")?.message).toContain("was removed from blueprint");
    expect(condition(refused, "FederationConfigured")).toMatchObject({
      status: "False",
      reason: "CredentialRemoved",
    });
    expect(refused.status?.federatedCredential).toBeUndefined();
    // Nothing is left in Entra for it (no created agent): the finalizer has nothing to guard.
    await expect
      .poll(async () => (await read("agent"))?.metadata.finalizers ?? [], { message: "finalizer removed" })
      .not.toContain(FINALIZER);
    await expect
      .poll(async () => (await eventsFor(admin, cp.namespace, "agent")).map((e) => `${e.type}/${e.reason}`))
      .toContain("Normal/CredentialRemoved");

    // Still refused, the identity makes no call outside the cluster, whatever its owner changes.
    const before = await emulatorRequests(op.emu);
    const changed = await alice.patch<AgentIdentity>(identityPath(cp.namespace, "agent"), "merge", {
      spec: { sidecar: { logLevel: "Debug" } },
    });
    await until(
      "agent",
      (i) =>
        i?.status?.observedGeneration === changed.metadata.generation &&
        refusedWith("NamespaceNotAdmitted")(i),
      "the change observed, still refused",
    );
    expect(await emulatorRequests(op.emu)).toBe(before);
    expect(await trusting("agent")).toEqual([]);

    // Admitted again: the operator writes the credential (and its finalizer) again.
    await admin.patch(blueprintPath(cp.namespace), "merge", {
      // admits is a list: a merge patch replaces it whole, so the rule names its agents again.
      spec: { admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT] } }] },
    });
    const back = await until("agent", ready, "Ready again");
    expect(await trusting("agent")).toHaveLength(1);
    expect(back.metadata.finalizers).toContain(FINALIZER);
  });

  it("an agent taken off admits.agents.allowed loses its credential; a created agent keeps the finalizer until deletion", async () => {
    await graphBlueprint({
      admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT], create: true } }],
    });
    const alice = await op.namespaceUser();
    await op.manager({ verify: false });
    await create(alice, "named");
    await create(alice, "made", { agent: { create: { displayName: "Made for revocation" } } });
    await until("named", ready, "Ready");
    const made = await until("made", ready, "Ready");
    const createdAgent = made.status?.agent?.clientId;
    expect(made.status?.agent?.created).toBe(true);
    expect(await trusting("named")).toHaveLength(1);
    expect(await trusting("made")).toHaveLength(1);

    // The platform team stops allowing AGENT: only the identity acting as it loses its credential.
    await admin.patch(blueprintPath(cp.namespace), "merge", {
      spec: { admits: [{ namespaces: [cp.namespace], agents: { allowed: [], create: true } }] },
    });
    await until("named", refusedWith("AgentNotAllowed"), "refused");
    expect(await trusting("named")).toEqual([]);
    await expect.poll(async () => (await read("named"))?.metadata.finalizers ?? []).not.toContain(FINALIZER);
    expect(await until("made", ready, "still Ready")).toBeDefined();
    expect(await trusting("made")).toHaveLength(1);

    // Then the namespace: the created agent's credential goes, the agent and the finalizer stay.
    await admin.patch(blueprintPath(cp.namespace), "merge", {
      spec: { admits: [{ namespaces: ["someone-else"], agents: { create: true } }] },
    });
    const refused = await until("made", refusedWith("NamespaceNotAdmitted"), "refused");
    expect(await trusting("made")).toEqual([]);
    expect(refused.metadata.finalizers).toContain(FINALIZER);
    expect(refused.status?.agent).toMatchObject({ created: true, clientId: createdAgent });
    expect((await agentsOf(op.emu)).map((a) => a.appId)).toContain(createdAgent);

    // Deleting it still deletes the agent it created.
    await alice.delete(identityPath(cp.namespace, "made"));
    await expect.poll(() => read("made"), { message: "made to be gone" }).toBeUndefined();
    expect((await agentsOf(op.emu)).map((a) => a.appId)).not.toContain(createdAgent);
  });

  it("blueprintRef cannot be switched by a namespace user; a blueprint moved to another application leaves nothing trusting the ServiceAccount", async () => {
    const otherApp = randomUUID();
    await emulatorAdmin(op.emu, "POST", `/_emulator/tenants/${TENANT}/applications`, {
      appId: otherApp,
      kind: "agentIdentityBlueprint",
      displayName: "The blueprint's new application",
      owners: [OPERATOR_APP],
    });
    await graphBlueprint();
    await createBlueprint(admin, `${cp.namespace}-other`, {
      ...onEmulator(op.emu),
      federation: { management: "Graph" },
      clientId: otherApp,
      admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT] } }],
    });
    const alice = await op.namespaceUser();
    await op.manager({ verify: false });
    await create(alice, "mover");
    await until("mover", ready, "Ready");
    expect(await trusting("mover")).toHaveLength(1);

    await expect(
      alice.patch(identityPath(cp.namespace, "mover"), "merge", {
        spec: { blueprintRef: { name: `${cp.namespace}-other` } },
      }),
    ).rejects.toMatchObject({ status: 422 });

    // The platform team points the blueprint at another application: the old one stops trusting it.
    await admin.patch(blueprintPath(cp.namespace), "merge", { spec: { clientId: otherApp } });
    const moved = await until(
      "mover",
      (i) => ready(i) && i?.status?.federatedCredential?.blueprint?.clientId === otherApp,
      "Ready on the new application",
    );
    expect(moved.status?.federatedCredential?.blueprint).toEqual({
      name: cp.namespace,
      tenantId: TENANT,
      clientId: otherApp,
    });
    expect(await trusting("mover", BLUEPRINT)).toEqual([]);
    expect(await trusting("mover", otherApp)).toHaveLength(1);

    await alice.delete(identityPath(cp.namespace, "mover"));
    await expect.poll(() => read("mover"), { message: "mover to be gone" }).toBeUndefined();
    expect(await trusting("mover", otherApp)).toEqual([]);
    expect(await trusting("mover", BLUEPRINT)).toEqual([]);
  });

  it("a deleted blueprint: the credential goes from the application status recorded", async () => {
    await graphBlueprint();
    const alice = await op.namespaceUser();
    await op.manager({ verify: false });
    await create(alice, "orphan");
    await until("orphan", ready, "Ready");
    expect(await trusting("orphan")).toHaveLength(1);

    await admin.delete(blueprintPath(cp.namespace));
    const refused = await until("orphan", refusedWith("BlueprintNotFound"), "refused");
    expect(await trusting("orphan")).toEqual([]);
    expect(condition(refused, "FederationConfigured")?.reason).toBe("CredentialRemoved");
    await expect.poll(async () => (await read("orphan"))?.metadata.finalizers ?? []).not.toContain(FINALIZER);
  });
});

describe("sweeping credentials whose identity was deleted without the operator's clean-up", () => {
  it("an identity deleted with its finalizer stripped by a namespace user: the sweep removes exactly its credential, never a foreign one", async () => {
    await graphBlueprint();
    const alice = await op.namespaceUser();
    const running = await op.manager({ verify: false });
    await create(alice, "stripped");
    await create(alice, "keeper");
    const stripped = await until("stripped", ready, "Ready");
    await until("keeper", ready, "Ready");
    const written = stripped.status?.federatedCredential?.name ?? "";
    expect(written).toMatch(/^agentid-/);
    // A credential the platform team wrote, for a subject no identity records either: not agentid's, so
    // never touched. (Entra refuses a second credential with the same issuer and subject.)
    const foreign = `platform-${cp.namespace}`;
    await op.trustOnBlueprint(foreign, "unbound");
    const before = (await blueprintCredentials(op.emu)).map((c) => c.name);
    expect(before).toEqual(expect.arrayContaining([written, foreign]));

    // The attack: whoever may update an AgentIdentity deletes it and strips the finalizer, so the
    // operator's clean-up never runs. A running operator would race the attacker (it puts its finalizer
    // back and cleans up within milliseconds), so the attack is made while no manager runs, as during an
    // upgrade or a leader change; the next manager finds the orphan.
    await running.stop();
    await alice.delete(identityPath(cp.namespace, "stripped"));
    await alice.patch(identityPath(cp.namespace, "stripped"), "merge", { metadata: { finalizers: null } });
    await expect.poll(() => read("stripped"), { message: "the AgentIdentity to be gone" }).toBeUndefined();
    expect((await blueprintCredentials(op.emu)).map((c) => c.name)).toContain(written);
    await op.manager({ verify: false });

    await expect
      .poll(async () => (await blueprintCredentials(op.emu)).map((c) => c.name), {
        message: "the orphaned credential to be swept",
      })
      .not.toContain(written);
    const after = await blueprintCredentials(op.emu);
    const names = after.map((c) => c.name);
    expect(names).toContain(foreign);
    expect(names).toContain((await read("keeper"))?.status?.federatedCredential?.name);
    // Exactly that one: every other credential there was before is still there.
    expect(names.sort()).toEqual(before.filter((n) => n !== written).sort());
    // Named in an Event on the blueprint (cluster-scoped: in the default namespace) and in the log.
    await expect
      .poll(async () => {
        const list = await admin.get<{
          items: Array<{
            reason?: string;
            message?: string;
            involvedObject?: { kind?: string; name?: string };
          }>;
        }>("/api/v1/namespaces/default/events");
        return list.items
          .filter(
            (e) =>
              e.involvedObject?.kind === "AgentIdentityBlueprint" && e.involvedObject.name === cp.namespace,
          )
          .map((e) => `${e.reason}: ${e.message}`)
          .join("\n");
      })
      .toContain(`OrphanedCredentialRemoved: Removed federated credential ${written}`);
    expect(op.logs.text()).toContain(written);
    // The keeper is untouched, and it is reconciled again after the sweep: still Ready.
    expect(await trusting("keeper")).toHaveLength(1);
    await until("keeper", ready, "Ready");
  });
});

describe("a sweep Graph refuses", () => {
  interface Directory {
    tenants: Array<{ id: string; applications?: Array<{ appId: string; owners?: string[] }> }>;
  }
  /** Sets who owns the blueprint's application in the emulator (the operator's OwnedBy reaches only those). */
  async function setBlueprintOwners(owners: string[]): Promise<void> {
    const directory = await emulatorAdmin<Directory>(op.emu, "GET", "/_emulator/directory");
    for (const tenant of directory.tenants)
      for (const app of tenant.applications ?? []) if (app.appId === BLUEPRINT) app.owners = owners;
    await emulatorAdmin(op.emu, "PUT", "/_emulator/directory", directory);
  }

  it("a removal Graph refuses is a warn log line naming the credential (no secrets) and a Warning on the blueprint", async () => {
    await graphBlueprint();
    const alice = await op.namespaceUser();
    await op.manager({ verify: false, graphRecheckMs: 500 });
    await create(alice, "unswept");
    const identity = await until("unswept", ready, "Ready");
    const written = identity.status?.federatedCredential?.name ?? "";
    expect(written).toMatch(/^agentid-/);
    // Graph stops letting the operator change the application, then the user deletes the identity and strips
    // the finalizer the operator's failing clean-up keeps: its credential is orphaned and cannot be removed.
    await setBlueprintOwners([]);
    try {
      await alice.delete(identityPath(cp.namespace, "unswept"));
      try {
        await alice.patch(identityPath(cp.namespace, "unswept"), "merge", { metadata: { finalizers: null } });
      } catch (error) {
        if (!String(error).includes("404") && !String(error).includes("not found")) throw error;
      }
      await expect.poll(() => read("unswept"), { message: "the AgentIdentity to be gone" }).toBeUndefined();
      const refusal = () =>
        op.logs
          .text()
          .split("\n")
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as { level: number; msg: string; credential?: string; subject?: string })
          .find((l) => l.msg.startsWith("cannot remove orphaned federated credential yet"));
      await expect.poll(refusal, { message: "the warn line of the failed removal" }).toBeDefined();
      expect(refusal()).toMatchObject({
        level: 40,
        blueprint: cp.namespace,
        credential: written,
        subject: `system:serviceaccount:${cp.namespace}:unswept`,
        reason: "GraphAccessDenied",
        retry: false,
      });
      expect(op.logs.text()).not.toContain(BLUEPRINT_SECRET);
      await expect
        .poll(async () => {
          const list = await admin.get<{
            items: Array<{ type?: string; reason?: string; involvedObject?: { name?: string } }>;
          }>("/api/v1/namespaces/default/events");
          return list.items.filter(
            (e) => e.involvedObject?.name === cp.namespace && e.reason === "OrphanedCredentialNotRemoved",
          ).length;
        })
        .toBe(1);
      expect((await blueprintCredentials(op.emu)).map((c) => c.name)).toContain(written);
    } finally {
      await setBlueprintOwners([OPERATOR_APP]);
    }
    // Owned again: the next sweep (every graphRecheckMs) removes it.
    await expect
      .poll(async () => (await blueprintCredentials(op.emu)).map((c) => c.name), {
        message: "the orphaned credential to be swept once Graph allows it",
      })
      .not.toContain(written);
  });
});
