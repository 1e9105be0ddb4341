import { describe, expect, it } from "vitest";
import { buildEvent, eventKey, MAX_EVENT_MESSAGE, sanitizeEventMessage } from "../../src/kube/events.ts";

const jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXZhbHVl";
const identity = {
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentity",
  metadata: { name: "agent", namespace: "team", uid: "u-1", resourceVersion: "42" },
};

describe("sanitizeEventMessage", () => {
  it.each([
    [`token ${jwt} was refused`, jwt],
    ["header Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"],
    ["posted client_secret=s3cr3t-value&grant_type=client_credentials", "s3cr3t-value"],
    ['body {"client_secret":"hunter22","scope":"x"}', "hunter22"],
    ["client_assertion=abc.def.ghi rejected", "abc.def.ghi"],
  ])("removes the secret from %s", (message, secret) => {
    const clean = sanitizeEventMessage(message);
    expect(clean).not.toContain(secret);
    expect(clean).toContain("redacted");
  });

  it("keeps ordinary text and caps the length", () => {
    expect(sanitizeEventMessage("ServiceAccount team/agent created")).toBe(
      "ServiceAccount team/agent created",
    );
    const long = sanitizeEventMessage("x".repeat(5000));
    expect(long).toHaveLength(MAX_EVENT_MESSAGE);
    expect(long.endsWith("...")).toBe(true);
  });
});

describe("sanitizeEventMessage: control characters", () => {
  it("replaces line breaks and tabs by a space and other C0, DEL, C1 and bidi controls by ?", () => {
    expect(sanitizeEventMessage("a\nb\r\nc\td")).toBe("a b  c d");
    expect(sanitizeEventMessage("x\u001b[31mred\u001b[0m\u0007\u0000")).toBe("x?[31mred?[0m??");
    expect(sanitizeEventMessage("del\u007f c1\u0085\u009b")).toBe("del? c1??");
    expect(sanitizeEventMessage("l\u2028p\u2029")).toBe("l p ");
    for (const bidi of [
      "\u202a",
      "\u202b",
      "\u202c",
      "\u202d",
      "\u202e",
      "\u2066",
      "\u2067",
      "\u2068",
      "\u2069",
    ])
      expect(sanitizeEventMessage(`a${bidi}b`)).toBe("a?b");
  });

  it("keeps printable Unicode (accents, CJK, emoji) as it is", () => {
    const text = "Agent für Kunden: 研究 🚀 — ok";
    expect(sanitizeEventMessage(text)).toBe(text);
  });

  it("still redacts a secret split by a line break, and caps what is left", () => {
    const clean = sanitizeEventMessage(`Authorization: Bearer\n${jwt}\n${"y".repeat(5000)}`);
    expect(clean).not.toContain(jwt);
    expect(clean).not.toMatch(/[\n\r]/);
    expect(clean).toHaveLength(MAX_EVENT_MESSAGE);
  });
});

describe("buildEvent", () => {
  it("describes the involved object and the source", () => {
    const now = Date.UTC(2026, 10, 27, 15, 0, 0, 500);
    const event = buildEvent(
      identity,
      "Warning",
      "SecretNotFound",
      "secret team/x missing",
      { component: "agentid-manager", instance: "pod-1" },
      now,
    );
    expect(event.metadata.namespace).toBe("team");
    expect(event.metadata.name).toMatch(/^agent\.[0-9a-f]+$/);
    expect(event).toMatchObject({
      involvedObject: {
        apiVersion: "agentid.io/v1alpha1",
        kind: "AgentIdentity",
        name: "agent",
        namespace: "team",
        uid: "u-1",
      },
      type: "Warning",
      reason: "SecretNotFound",
      count: 1,
      firstTimestamp: "2026-11-27T15:00:00Z",
      lastTimestamp: "2026-11-27T15:00:00Z",
      source: { component: "agentid-manager" },
      reportingComponent: "agentid-manager",
      reportingInstance: "pod-1",
    });
  });

  it("puts events about cluster-scoped objects in the default namespace", () => {
    const event = buildEvent(
      { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } },
      "Normal",
      "Seen",
      "m",
      { component: "c" },
      0,
    );
    expect(event.metadata.namespace).toBe("default");
    expect((event.involvedObject as Record<string, unknown>).namespace).toBeUndefined();
  });
});

describe("eventKey", () => {
  it("differs by object, type, reason and message, and is stable otherwise", () => {
    const base = eventKey(identity, "Normal", "Ready", "ok");
    expect(eventKey(identity, "Normal", "Ready", "ok")).toBe(base);
    expect(eventKey(identity, "Warning", "Ready", "ok")).not.toBe(base);
    expect(eventKey(identity, "Normal", "Verified", "ok")).not.toBe(base);
    expect(eventKey(identity, "Normal", "Ready", "other")).not.toBe(base);
    expect(
      eventKey({ ...identity, metadata: { ...identity.metadata, uid: "u-2" } }, "Normal", "Ready", "ok"),
    ).not.toBe(base);
  });
});
