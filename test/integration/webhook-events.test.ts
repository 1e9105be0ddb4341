import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CONDITION_READY } from "../../src/api/constants.ts";
import type { AgentIdentity } from "../../src/api/types.ts";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import { DROPPED_METRIC } from "../../src/kube/events.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { REFUSAL_NAMESPACE_LIMIT } from "../../src/webhook/events.ts";
import { ensureIdentityEditorRole, namespaceUserClient } from "./namespace-user.ts";
import { identityBody } from "./operator-support.ts";
import {
  createReadyIdentity,
  createTestBlueprint,
  useTestWebhook,
  useWebhookControlPlane,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * The attacker of the refusal Events: a namespace user (not cluster-admin) who creates refused pods in a
 * loop, each with a different hostPort so that no two refusal messages are the same. What the webhook writes
 * about it stays bounded: per AgentIdentity (the 11th distinct message on is combined; 25 writes, then one
 * every 5 minutes) and per namespace (more AgentIdentities buy no more Events).
 * The recorder's clock is frozen, so that no budget refills while a slow machine runs the loop.
 */

const { run, cp } = useWebhookControlPlane("whevents");
let clock = Date.UTC(2026, 11, 6, 12, 0, 0);
const hook = useTestWebhook(cp, { run, eventClock: () => clock });
let admin: KubeClient;
let alice: KubeClient | undefined;

beforeAll(async () => {
  admin = createKubeClient(cp.kubeConfig);
  await ensureIdentityEditorRole(admin);
});
afterAll(async () => {
  await alice?.close();
  await admin?.close();
});
beforeEach(async () => {
  await alice?.close();
  alice = await namespaceUserClient(admin, cp, cp.namespace);
  await createTestBlueprint(admin, cp.namespace);
});

interface CoreEvent {
  involvedObject: { kind: string; name: string };
  reason: string;
  message: string;
  count: number;
  source?: { component?: string };
}

/** A pod the webhook refuses: it asks for a host port, a different one each time. */
function hostPortPod(serviceAccountName: string, hostPort: number) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "loop-", labels: { "agentid.io/inject": "true" } },
    spec: {
      serviceAccountName,
      containers: [{ name: "app", image: "app:1", ports: [{ containerPort: 80, hostPort }] }],
    },
  };
}

async function refusedAs(
  user: KubeClient,
  serviceAccount: string,
  hostPort: number,
  namespace = cp.namespace,
): Promise<void> {
  try {
    await user.create(`/api/v1/namespaces/${namespace}/pods`, hostPortPod(serviceAccount, hostPort));
  } catch (error) {
    if (isApiError(error) && error.message.includes(`hostPort ${hostPort}`)) return;
    throw error;
  }
  throw new Error(`a pod with hostPort ${hostPort} was admitted`);
}

async function webhookEvents(namespace = cp.namespace): Promise<CoreEvent[]> {
  await hook.events.flush();
  const list = await admin.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${namespace}/events`);
  return list.items.filter(
    (e) => e.involvedObject.kind === "AgentIdentity" && e.source?.component === "agentid-webhook",
  );
}

async function droppedTotal(): Promise<number> {
  const values = (await hook.registry.getSingleMetric(DROPPED_METRIC)?.get())?.values ?? [];
  return values
    .filter((v) => v.labels.component === "agentid-webhook" && v.labels.reason === "rate_limited")
    .reduce((sum, v) => sum + v.value, 0);
}

/** The user makes these identities herself; the status the operator would write makes them Ready. */
async function readyIdentitiesOf(user: KubeClient, names: readonly string[]): Promise<void> {
  for (const name of names) {
    await user.create(identityPath(cp.namespace), identityBody(cp.namespace, name));
    await markReady(name);
    await waitUntilServed(admin, cp.namespace, name);
  }
}

/** Writes the Ready status the operator would (it does not run here). */
async function markReady(name: string): Promise<void> {
  const path = identityPath(cp.namespace, name);
  const identity = await admin.get<AgentIdentity>(path);
  const generation = identity.metadata.generation ?? 1;
  await admin.replace(`${path}/status`, {
    ...identity,
    status: {
      observedGeneration: generation,
      conditions: [
        {
          type: CONDITION_READY,
          status: "True",
          reason: "Bound",
          message: "test",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          observedGeneration: generation,
        },
      ],
    },
  });
}

const sumOfCounts = (events: CoreEvent[]) => events.reduce((sum, e) => sum + e.count, 0);

describe("refusal Events under a namespace user's loop", () => {
  it("60 refused pods with 60 different messages make 11 Events on the AgentIdentity, 25 writes in all", async () => {
    await createReadyIdentity(admin, cp.namespace, "research-agent");
    await waitUntilServed(admin, cp.namespace, "research-agent");
    const user = alice as KubeClient;
    const droppedBefore = await droppedTotal();
    for (let i = 0; i < 60; i++) await refusedAs(user, "research-agent", 8000 + i);
    const events = await webhookEvents();
    expect(events.every((e) => e.involvedObject.name === "research-agent" && e.reason === "PodRefused")).toBe(
      true,
    );
    // Ten distinct messages as themselves, then one combined Event for the rest.
    expect(events).toHaveLength(11);
    const combined = events.filter((e) => e.message.startsWith("(combined from similar events): "));
    expect(combined).toHaveLength(1);
    // 25 writes (10 + 15 on the combined one); the other 35 attempts were dropped and counted.
    expect(combined[0]?.message).toContain("hostPort 8024");
    expect(combined[0]?.count).toBe(15);
    expect(sumOfCounts(events)).toBe(25);
    expect((await droppedTotal()) - droppedBefore).toBe(35);

    // Five minutes later the identity has one more write, and it carries every attempt since.
    clock += 5 * 60_000;
    await refusedAs(user, "research-agent", 9000);
    const later = await webhookEvents();
    expect(later).toHaveLength(11);
    expect(later.find((e) => e.message.startsWith("(combined"))).toMatchObject({ count: 51 });
    expect(later.find((e) => e.message.startsWith("(combined"))?.message).toContain("hostPort 9000");
  });

  it("more AgentIdentities of her own do not buy the user more Events: the namespace has a budget", async () => {
    const user = alice as KubeClient;
    // The user makes the identities herself (the chart's agentid-identity-editor role); the status the
    // operator would write makes them Ready.
    const names = ["loop-a", "loop-b", "loop-c"];
    await readyIdentitiesOf(user, names);
    const droppedBefore = await droppedTotal();
    // 25 rounds over 3 identities: 75 refusals, each identity within its own budget of 25.
    for (let round = 0; round < 25; round++) {
      for (const [k, name] of names.entries()) await refusedAs(user, name, 10_000 + round * 10 + k);
    }
    const events = await webhookEvents();
    expect(new Set(events.map((e) => e.involvedObject.name))).toEqual(new Set(names));
    expect(sumOfCounts(events)).toBe(REFUSAL_NAMESPACE_LIMIT.burst);
    expect(events.length).toBeLessThanOrEqual(names.length * 11);
    expect((await droppedTotal()) - droppedBefore).toBe(75 - REFUSAL_NAMESPACE_LIMIT.burst);
  });

  it("a namespace that used up its budget leaves another namespace's refusal Events alone", async () => {
    const user = alice as KubeClient;
    // Alice uses up her namespace's PodRefused budget (if the tests above have not already).
    const names = ["spam-a", "spam-b", "spam-c"];
    await readyIdentitiesOf(user, names);
    for (let round = 0; round < 25; round++) {
      for (const [k, name] of names.entries()) await refusedAs(user, name, 20_000 + round * 10 + k);
    }
    const droppedBefore = await droppedTotal();
    await refusedAs(user, "spam-a", 21_000);
    await hook.events.flush();
    expect((await droppedTotal()) - droppedBefore).toBe(1);

    // Bob, a user of another namespace (whose own blueprint admits it), has his refusal recorded.
    const other = `${cp.namespace}-b`;
    await createNamespace(cp.kubeConfig, other, { "agentid-test-run": run });
    await createTestBlueprint(admin, other);
    await createReadyIdentity(admin, other, "bob-agent");
    await waitUntilServed(admin, other, "bob-agent");
    const bob = await namespaceUserClient(admin, cp, other);
    try {
      await refusedAs(bob, "bob-agent", 8080, other);
    } finally {
      await bob.close();
    }
    const events = await webhookEvents(other);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      reason: "PodRefused",
      count: 1,
      involvedObject: { name: "bob-agent" },
    });
    expect(events[0]?.message).toContain("hostPort 8080");
    expect((await droppedTotal()) - droppedBefore).toBe(1);
  });
});
