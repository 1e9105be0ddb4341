import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  blueprintAdmits,
  blueprintAdmitsIdentity,
  namespaceGrant,
  namespaceLimitReached,
} from "../../src/api/admit.ts";
import type { AdmitRule, AgentIdentity } from "../../src/api/types.ts";
import { AGENT, blueprint, identity, OTHER_AGENT } from "../support/api-fixtures.ts";

/**
 * spec.admits is a list of rules: namespace A may act as agent X and namespace B as agent Y under one
 * blueprint, a namespace gets the union of the rules that admit it, and a rule may cap how many
 * identities one namespace holds (NamespaceLimitReached, oldest first).
 */
const THIRD = "55555555-5555-5555-5555-555555555555";
const teams = blueprint({
  admits: [
    { namespaces: ["team-a"], agents: { allowed: [AGENT] } },
    { namespaceSelector: { matchLabels: { team: "b" } }, agents: { allowed: [OTHER_AGENT] } },
  ],
});

describe("admits rules", () => {
  it("ties each namespace to its own rule's agents", () => {
    expect(blueprintAdmits(teams, { name: "team-a" }, AGENT)).toEqual({ allowed: true });
    expect(blueprintAdmits(teams, { name: "team-b", labels: { team: "b" } }, OTHER_AGENT)).toEqual({
      allowed: true,
    });
    const crossed = blueprintAdmits(teams, { name: "team-b", labels: { team: "b" } }, AGENT);
    expect(crossed).toMatchObject({ allowed: false, reason: "AgentNotAllowed" });
    expect(crossed.allowed === false && crossed.message).toContain("namespace team-b");
    expect(blueprintAdmits(teams, { name: "team-a" }, OTHER_AGENT)).toMatchObject({
      reason: "AgentNotAllowed",
    });
    expect(blueprintAdmits(teams, { name: "team-c" }, AGENT)).toMatchObject({
      reason: "NamespaceNotAdmitted",
    });
  });

  it("gives a namespace two rules admit the union of their agents and permissions", () => {
    const both = { name: "team-a", labels: { team: "b" } };
    expect(blueprintAdmits(teams, both, AGENT)).toEqual({ allowed: true });
    expect(blueprintAdmits(teams, both, OTHER_AGENT)).toEqual({ allowed: true });
    expect(blueprintAdmits(teams, both, THIRD)).toMatchObject({ reason: "AgentNotAllowed" });
    const secrets = blueprint({
      admits: [
        { namespaces: ["dev"], developmentSecrets: true },
        { namespaces: ["dev", "prod"], agents: { allowed: [AGENT] } },
      ],
    });
    const withSecret = identity({ clientSecretRef: { name: "s", key: "k" } });
    expect(blueprintAdmitsIdentity(secrets, { name: "dev" }, withSecret)).toEqual({ allowed: true });
    expect(blueprintAdmitsIdentity(secrets, { name: "prod" }, withSecret)).toMatchObject({
      reason: "DevelopmentSecretsNotAllowed",
    });
  });

  it("lets only the rules that admit a namespace widen its sidecar or create agents", () => {
    const bp = blueprint({
      admits: [
        { namespaces: ["trusted"], agents: { create: true }, sidecar: { allowBlueprintToken: true } },
        { namespaces: ["other"], agents: { allowed: [AGENT] } },
      ],
    });
    const widened = identity({ sidecar: { allowBlueprintToken: true } });
    expect(blueprintAdmitsIdentity(bp, { name: "other" }, widened)).toMatchObject({
      reason: "SidecarWideningNotAllowed",
    });
    expect(blueprintAdmits(bp, { name: "other" }, undefined)).toMatchObject({
      reason: "AgentCreationNotAllowed",
    });
    expect(blueprintAdmits(bp, { name: "trusted" }, undefined)).toEqual({ allowed: true });
  });

  const agentArb = fc.constantFrom(AGENT, OTHER_AGENT, THIRD);
  const nsArb = fc.constantFrom("a", "b", "c");
  const ruleArb: fc.Arbitrary<AdmitRule> = fc.record(
    {
      namespaces: fc.uniqueArray(nsArb, { maxLength: 2 }),
      namespaceSelector: fc.constant({ matchLabels: { team: "x" } }),
      agents: fc.record({ allowed: fc.uniqueArray(agentArb, { maxLength: 2 }), create: fc.boolean() }),
      maxIdentities: fc.nat(4),
    },
    { requiredKeys: ["agents"] },
  );

  it("admits exactly what some admitting rule allows (property)", () => {
    fc.assert(
      fc.property(
        fc.array(ruleArb, { maxLength: 4 }),
        nsArb,
        fc.boolean(),
        agentArb,
        (rules, ns, labelled, agent) => {
          const bp = blueprint({ admits: rules });
          const namespace = { name: ns, ...(labelled ? { labels: { team: "x" } } : {}) };
          const admitting = rules.filter(
            (r) => r.namespaces?.includes(ns) || (labelled && r.namespaceSelector !== undefined),
          );
          const expected = admitting.some((r) => r.agents?.allowed?.includes(agent));
          expect(blueprintAdmits(bp, namespace, agent).allowed).toBe(expected);
          expect(blueprintAdmits(bp, namespace, undefined).allowed).toBe(
            admitting.some((r) => r.agents?.create === true),
          );
          const grant = namespaceGrant(bp, namespace);
          expect(grant === undefined).toBe(admitting.length === 0);
          if (grant && admitting.every((r) => r.maxIdentities !== undefined))
            expect(grant.maxIdentities).toBe(Math.max(...admitting.map((r) => r.maxIdentities ?? 0)));
          else if (grant) expect(grant.maxIdentities).toBeUndefined();
        },
      ),
    );
  });
});

describe("namespaceLimitReached", () => {
  const capped = (max: number | undefined) =>
    blueprint({
      admits: [
        {
          namespaces: ["ns"],
          agents: { allowed: [AGENT] },
          ...(max === undefined ? {} : { maxIdentities: max }),
        },
      ],
    });
  const at = (name: string, second: number, spec: Partial<AgentIdentity["spec"]> = {}): AgentIdentity => {
    const i = identity(spec, name);
    i.metadata.creationTimestamp = new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString();
    return i;
  };
  const ns = { name: "ns" };

  it("keeps the oldest (creation time, then name) and refuses the rest", () => {
    const all = [at("d", 3), at("b", 1), at("c", 1), at("a", 2)];
    const refused = all
      .filter((i) => namespaceLimitReached(capped(2), ns, i, all))
      .map((i) => i.metadata.name);
    expect(refused.sort()).toEqual(["a", "d"]);
    const message = namespaceLimitReached(capped(2), ns, all[0] as AgentIdentity, all)?.message;
    expect(message).toContain("at most 2");
    expect(all.filter((i) => namespaceLimitReached(capped(undefined), ns, i, all))).toEqual([]);
    expect(all.filter((i) => namespaceLimitReached(capped(0), ns, i, all))).toHaveLength(4);
  });

  it("counts only identities that use the blueprint: not deleting, admitted, holding their ServiceAccount, same blueprint", () => {
    const deleting = at("old-deleting", 0);
    deleting.metadata.deletionTimestamp = "2026-01-02T00:00:00Z";
    const wrongAgent = at("old-wrong-agent", 0, { agent: { clientId: OTHER_AGENT } });
    const otherBlueprint = at("old-other-bp", 0, { blueprintRef: { name: "other" } });
    const holder = at("old-holder", 0, { serviceAccountName: "shared" });
    const taken = at("old-taken", 1, { serviceAccountName: "shared" });
    const mine = at("mine", 5);
    const all = [deleting, wrongAgent, otherBlueprint, holder, taken, mine];
    expect(namespaceLimitReached(capped(2), ns, mine, all)).toBeUndefined();
    expect(namespaceLimitReached(capped(1), ns, mine, all)).toMatchObject({
      reason: "NamespaceLimitReached",
    });
  });

  it("holds for any set of identities: the oldest `cap` eligible keep their place (property)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ name: fc.stringMatching(/^[a-z]{1,3}$/), second: fc.nat(5) }), {
          selector: (r) => r.name,
          maxLength: 8,
        }),
        fc.nat(5),
        (rows, cap) => {
          const all = rows.map((r) => at(r.name, r.second));
          const kept = all.filter((i) => !namespaceLimitReached(capped(cap), ns, i, all));
          expect(kept).toHaveLength(Math.min(cap, all.length));
          const order = [...all].sort(
            (x, y) =>
              (x.metadata.creationTimestamp ?? "").localeCompare(y.metadata.creationTimestamp ?? "") ||
              (x.metadata.name < y.metadata.name ? -1 : 1),
          );
          expect(new Set(kept.map((i) => i.metadata.name))).toEqual(
            new Set(order.slice(0, cap).map((i) => i.metadata.name)),
          );
        },
      ),
    );
  });
});
