import { describe, expect, it } from "vitest";
import type { AgentIdentity, AgentIdentitySpec } from "../../src/api/types.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import {
  blueprintCredentials,
  emulatorRequests,
  onEmulator,
  settledEmulatorRequests,
} from "./operator-fixture.ts";
import { useOperatorHarness } from "./operator-harness.ts";
import { AGENT, condition, createBlueprint, identityBody } from "./operator-support.ts";

/**
 * Tenancy within one blueprint, tried as a namespace user (edit + agentid-identity-editor, never
 * cluster-admin): admits rules tie namespaces to their own agents, and a rule's maxIdentities keeps one
 * namespace from taking all of the blueprint's federated credentials.
 */
const op = useOperatorHarness({ namespacePrefix: "tenancy" });
const { cp, admin, read } = op;
const OTHER_TEAMS_AGENT = "6a6a6a6a-1111-4222-8333-444455556666";

const ready = async (name: string) => {
  const c = condition(await read(name), "Ready");
  return `${c?.status}/${c?.reason}`;
};
const attempt = (as: KubeClient, name: string, spec: Partial<AgentIdentitySpec> = {}) =>
  as.create<AgentIdentity>(identityPath(cp.namespace), identityBody(cp.namespace, name, spec));
/** The credentials the operator wrote on the blueprint for this test's namespace. */
const namespaceCredentials = async () =>
  (await blueprintCredentials(op.emu)).filter((c) =>
    c.subject.startsWith(`system:serviceaccount:${cp.namespace}:`),
  );

describe("tenancy within one blueprint, as a namespace user", () => {
  it("namespace A may act as agent X and namespace B as agent Y: B cannot bind X", async () => {
    const teamA = `${cp.namespace}-a`;
    // This test's namespace is team B's.
    await createBlueprint(admin, cp.namespace, {
      ...onEmulator(op.emu),
      federation: { management: "Graph" },
      admits: [
        { namespaces: [teamA], agents: { allowed: [AGENT] } },
        { namespaces: [cp.namespace], agents: { allowed: [OTHER_TEAMS_AGENT] } },
      ],
    });
    const user = await op.namespaceUser();
    await op.manager({ verify: false });
    await attempt(user, "own-agent", { agent: { clientId: OTHER_TEAMS_AGENT } });
    await expect.poll(() => ready("own-agent"), { timeout: 30_000 }).toBe("True/Ready");
    const before = await settledEmulatorRequests(op.emu);
    await attempt(user, "team-a-agent", { agent: { clientId: AGENT } });
    await expect.poll(() => ready("team-a-agent"), { timeout: 30_000 }).toBe("False/AgentNotAllowed");
    expect(condition(await read("team-a-agent"), "Ready")?.message).toContain(
      `does not allow namespace ${cp.namespace} to act as agent ${AGENT}`,
    );
    // Refused from the caches: no ServiceAccount, no credential, no call to Entra or Graph.
    expect(await admin.getOptional(serviceAccountPath(cp.namespace, "team-a-agent"))).toBeUndefined();
    expect((await namespaceCredentials()).map((c) => c.subject)).toEqual([
      `system:serviceaccount:${cp.namespace}:own-agent`,
    ]);
    expect(await emulatorRequests(op.emu)).toBe(before);
  });

  it("maxIdentities: the oldest keep their places, the next is NamespaceLimitReached with no outbound call, and moves up when one goes", async () => {
    await createBlueprint(admin, cp.namespace, {
      ...onEmulator(op.emu),
      federation: { management: "Graph" },
      admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT] }, maxIdentities: 2 }],
    });
    const user = await op.namespaceUser();
    await op.manager({ verify: false });
    await attempt(user, "first");
    await attempt(user, "second");
    await expect.poll(() => ready("first"), { timeout: 30_000 }).toBe("True/Ready");
    await expect.poll(() => ready("second"), { timeout: 30_000 }).toBe("True/Ready");
    const before = await settledEmulatorRequests(op.emu);
    await attempt(user, "third");
    await expect.poll(() => ready("third"), { timeout: 30_000 }).toBe("False/NamespaceLimitReached");
    expect(condition(await read("third"), "Ready")?.message).toContain("at most 2 AgentIdentities");
    expect(await admin.getOptional(serviceAccountPath(cp.namespace, "third"))).toBeUndefined();
    expect((await namespaceCredentials()).map((c) => c.subject).sort()).toEqual([
      `system:serviceaccount:${cp.namespace}:first`,
      `system:serviceaccount:${cp.namespace}:second`,
    ]);
    expect(await emulatorRequests(op.emu)).toBe(before);
    // A newer identity cannot push an older one out: the first two stay Ready.
    expect(await ready("first")).toBe("True/Ready");
    expect(await ready("second")).toBe("True/Ready");

    // One goes (its credential is removed by the finalizer): the next in line gets the place.
    await user.delete(identityPath(cp.namespace, "first"));
    await expect.poll(() => ready("third"), { timeout: 30_000 }).toBe("True/Ready");
    await expect
      .poll(async () => (await namespaceCredentials()).map((c) => c.subject).sort(), { timeout: 30_000 })
      .toEqual([
        `system:serviceaccount:${cp.namespace}:second`,
        `system:serviceaccount:${cp.namespace}:third`,
      ]);
  });
});
