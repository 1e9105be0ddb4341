import { describe, expect, it } from "vitest";
import { desiredFederatedCredential } from "../../src/operator/federation.ts";
import type { GraphFederation, ObservedCredential } from "../../src/operator/graph.ts";
import {
  createCredentialObservations,
  orphanedCredentials,
  writtenByAgentid,
} from "../../src/operator/sweep.ts";
import { BLUEPRINT, blueprint, identity, TENANT } from "../support/api-fixtures.ts";

const ISSUER = "https://issuer.example.test";
const mine = (namespace: string, sa: string, issuer = ISSUER): ObservedCredential => {
  const { name, subject } = desiredFederatedCredential(namespace, sa, issuer);
  return { name, issuer, subject };
};

/** Which orphaned credentials a Graph-mode blueprint's sweep removes (pure). */
describe("orphanedCredentials", () => {
  const bp = blueprint({ federation: { management: "Graph" } });

  it("removes agentid's credential for a subject no identity records, and nothing else", () => {
    const kept = mine("ns", "kept");
    const orphan = mine("ns", "gone");
    const foreign = { name: "team-own-credential", issuer: ISSUER, subject: "system:serviceaccount:ns:gone" };
    // The agentid- prefix alone is not enough: the name must be the one derived from issuer and subject.
    const lookalike = { ...orphan, name: `${orphan.name.slice(0, -12)}000000000000` };
    const otherCluster = mine("ns", "gone", "https://other-cluster.example.test");
    const found = orphanedCredentials(
      bp,
      [kept, orphan, foreign, lookalike, otherCluster],
      [identity({}, "kept")],
      ISSUER,
    );
    expect(found).toEqual([orphan]);
    expect(writtenByAgentid(lookalike)).toBe(false);
    expect(writtenByAgentid(foreign)).toBe(false);
  });

  it("keeps what an identity records in spec or status, being deleted or not", () => {
    const deleting = identity({}, "deleting");
    deleting.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    // Status still records an earlier subject (the status of an object stored before the immutability rule).
    const moved = identity({ serviceAccountName: "now" }, "moved");
    moved.status = {
      federatedCredential: {
        ...mine("ns", "before"),
        audiences: [],
        blueprint: { name: "bp", tenantId: TENANT, clientId: BLUEPRINT },
      },
    };
    const credentials = [mine("ns", "deleting"), mine("ns", "now"), mine("ns", "before")];
    expect(orphanedCredentials(bp, credentials, [deleting, moved], ISSUER)).toEqual([]);
  });

  it("does not count identities of another blueprint, unless their status records this application", () => {
    const elsewhere = identity({ blueprintRef: { name: "other" } }, "agent");
    const credential = mine("ns", "agent");
    expect(orphanedCredentials(bp, [credential], [elsewhere], ISSUER)).toEqual([credential]);
    elsewhere.status = {
      federatedCredential: {
        ...credential,
        audiences: [],
        blueprint: { name: "bp", tenantId: TENANT.toUpperCase(), clientId: BLUEPRINT },
      },
    };
    expect(orphanedCredentials(bp, [credential], [elsewhere], ISSUER)).toEqual([]);
  });

  it("a manager watching one namespace sweeps only that namespace's subjects", () => {
    const here = mine("ns", "gone");
    const there = mine("team-b", "gone");
    expect(orphanedCredentials(bp, [here, there], [], ISSUER, "ns")).toEqual([here]);
    expect(orphanedCredentials(bp, [here, there], [], ISSUER)).toEqual([here, there]);
  });
});

describe("createCredentialObservations", () => {
  it("keeps what ensure and list answered and drops what remove removed", async () => {
    const a = mine("ns", "a");
    const b = mine("ns", "b");
    const fake: GraphFederation = {
      list: async () => ({ ok: true, credentials: [a] }),
      ensure: async () => ({
        ok: true,
        reason: "CredentialCreated",
        message: "",
        count: 2,
        credentials: [a, b],
      }),
      remove: async () => ({ ok: true, reason: "CredentialRemoved", message: "" }),
    };
    const observations = createCredentialObservations();
    const federation = observations.observe(fake);
    expect(observations.get(TENANT, BLUEPRINT)).toBeUndefined();
    await federation.list(TENANT, BLUEPRINT);
    expect(observations.get(TENANT, BLUEPRINT)).toEqual([a]);
    await federation.ensure(TENANT, BLUEPRINT, { ...b, audiences: [] });
    expect(observations.get(TENANT.toUpperCase(), BLUEPRINT)).toEqual([a, b]);
    // A prefix that does not match the subject removes nothing, in Graph as here.
    await federation.remove(TENANT, BLUEPRINT, a.name, "system:serviceaccount:other:");
    expect(observations.get(TENANT, BLUEPRINT)).toEqual([a, b]);
    await federation.remove(TENANT, BLUEPRINT, a.name, a.subject);
    expect(observations.get(TENANT, BLUEPRINT)).toEqual([b]);
  });
});
