import { describe, expect, it } from "vitest";
import { validateElectionTimings } from "../../src/kube/leader.ts";
import {
  decide,
  formatMicroTime,
  type LeaderRecord,
  leaseBody,
  observe,
  recordOf,
  releasedRecord,
} from "../../src/kube/lease.ts";

const T0 = Date.UTC(2026, 10, 27, 12, 0, 0, 123);
const held = (holder: string, transitions = 0): LeaderRecord => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  acquireTime: formatMicroTime(T0 - 60_000),
  renewTime: formatMicroTime(T0 - 1_000),
  leaseTransitions: transitions,
});

describe("formatMicroTime", () => {
  it("writes RFC 3339 with six fractional digits, as MicroTime requires", () => {
    expect(formatMicroTime(T0)).toBe("2026-11-27T12:00:00.123000Z");
  });
});

describe("decide", () => {
  it("creates the lease when there is none", () => {
    const d = decide({
      current: undefined,
      previous: undefined,
      nowMs: T0,
      identity: "a",
      leaseDurationSeconds: 15,
    });
    expect(d).toEqual({
      action: "create",
      record: {
        holderIdentity: "a",
        leaseDurationSeconds: 15,
        acquireTime: formatMicroTime(T0),
        renewTime: formatMicroTime(T0),
        leaseTransitions: 0,
      },
    });
  });

  it("waits while another holder's record is younger than its duration, by our clock", () => {
    const current = held("b");
    const first = decide({
      current,
      previous: undefined,
      nowMs: T0,
      identity: "a",
      leaseDurationSeconds: 15,
    });
    expect(first).toEqual({ action: "wait", holder: "b" });
    // The same record seen 14.9 s later: still valid, whatever its renewTime says.
    const previous = observe(undefined, current, T0);
    const later = decide({ current, previous, nowMs: T0 + 14_900, identity: "a", leaseDurationSeconds: 15 });
    expect(later.action).toBe("wait");
  });

  it("takes over an expired lease, bumping leaseTransitions and setting acquireTime", () => {
    const current = held("b", 4);
    const previous = observe(undefined, current, T0);
    const d = decide({ current, previous, nowMs: T0 + 15_000, identity: "a", leaseDurationSeconds: 10 });
    expect(d).toEqual({
      action: "update",
      record: {
        holderIdentity: "a",
        leaseDurationSeconds: 10,
        acquireTime: formatMicroTime(T0 + 15_000),
        renewTime: formatMicroTime(T0 + 15_000),
        leaseTransitions: 5,
      },
    });
  });

  it("restarts the expiry clock when the holder renews (the record changes)", () => {
    const previous = observe(undefined, held("b"), T0);
    const renewed = { ...held("b"), renewTime: formatMicroTime(T0 + 10_000) };
    const d = decide({
      current: renewed,
      previous,
      nowMs: T0 + 20_000,
      identity: "a",
      leaseDurationSeconds: 15,
    });
    expect(d.action).toBe("wait");
    expect(observe(previous, renewed, T0 + 20_000).observedAtMs).toBe(T0 + 20_000);
    expect(observe(previous, held("b"), T0 + 20_000).observedAtMs).toBe(T0);
  });

  it("renews its own lease keeping acquireTime and transitions", () => {
    const current = held("a", 2);
    const d = decide({ current, previous: undefined, nowMs: T0, identity: "a", leaseDurationSeconds: 15 });
    expect(d).toEqual({
      action: "update",
      record: { ...current, renewTime: formatMicroTime(T0) },
    });
  });

  it("takes a released lease (empty holder) at once", () => {
    const released = releasedRecord(held("b", 3), T0);
    const d = decide({
      current: released,
      previous: undefined,
      nowMs: T0,
      identity: "a",
      leaseDurationSeconds: 15,
    });
    expect(d.action).toBe("update");
    if (d.action === "update") expect(d.record.leaseTransitions).toBe(4);
  });
});

describe("lease objects", () => {
  it("reads a record with missing fields as empty and keeps unknown spec fields on write", () => {
    const lease = {
      metadata: { name: "l", namespace: "ns", resourceVersion: "7" },
      spec: { holderIdentity: null, strategy: "OldestEmulationVersion" },
    };
    expect(recordOf(lease)).toEqual({ holderIdentity: "", leaseDurationSeconds: 0, leaseTransitions: 0 });
    const body = leaseBody("ns", "l", releasedRecord(held("a", 1), T0), lease);
    expect(body.metadata.resourceVersion).toBe("7");
    expect(body.spec).toMatchObject({ holderIdentity: "", leaseDurationSeconds: 1, leaseTransitions: 1 });
    expect(body.spec.strategy).toBe("OldestEmulationVersion");
  });
});

describe("validateElectionTimings", () => {
  it("requires lease > renew deadline > retry period > 0", () => {
    expect(() => validateElectionTimings(15, 10, 2)).not.toThrow();
    expect(() => validateElectionTimings(10, 10, 2)).toThrow(/leaseDurationSeconds/);
    expect(() => validateElectionTimings(15, 2, 2)).toThrow(/renewDeadlineSeconds/);
    expect(() => validateElectionTimings(15, 10, 0)).toThrow(/retryPeriodSeconds/);
  });
});
