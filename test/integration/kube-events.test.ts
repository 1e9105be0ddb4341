import { describe, expect, it } from "vitest";
import { createKubeClient } from "../../src/kube/client.ts";
import { createEventRecorder } from "../../src/kube/events.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { type ConfigMap, configMap, createNamespace, testLogger } from "./kube-support.ts";

/** The event recorder against kube-apiserver: de-duplication by count, scrubbing, ordering of repeats. */

const cp = connectControlPlane();

interface CoreEvent {
  metadata: { name: string };
  involvedObject: { kind: string; name: string; uid?: string };
  reason: string;
  message: string;
  type: string;
  count: number;
  source?: { component?: string };
}

describe("event recorder", () => {
  it("bumps the count of a repeated event and keeps distinct events apart", async () => {
    const client = createKubeClient(cp.kubeConfig);
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client,
      component: "agentid-manager",
      instance: "test-pod",
      logger: testLogger("kube-events-test"),
    });
    try {
      const ns = await createNamespace(client, "events");
      const subject = await client.create<ConfigMap>(
        `/api/v1/namespaces/${ns}/configmaps`,
        configMap(ns, "subject", {}),
      );
      const obj = { ...subject, apiVersion: "v1", kind: "ConfigMap" };
      // Fired without awaiting, as a reconciler does: the repeats must still be counted, not raced.
      for (let i = 0; i < 5; i++) recorder.record(obj, "Warning", "SecretNotFound", "secret x is missing");
      recorder.record(obj, "Normal", "Ready", "all good");
      await recorder.flush();
      const list = await client.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${ns}/events`);
      const byReason = Object.fromEntries(list.items.map((e) => [e.reason, e]));
      expect(list.items).toHaveLength(2);
      expect(byReason.SecretNotFound).toMatchObject({
        type: "Warning",
        count: 5,
        message: "secret x is missing",
        involvedObject: { kind: "ConfigMap", name: "subject", uid: subject.metadata.uid },
        source: { component: "agentid-manager" },
      });
      expect(byReason.Ready?.count).toBe(1);
    } finally {
      await client.close();
    }
  });

  it("never writes a token or secret into an Event", async () => {
    const client = createKubeClient(cp.kubeConfig);
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      client,
      component: "c",
      logger: testLogger("t"),
    });
    try {
      const ns = await createNamespace(client, "events-secret");
      const subject = await client.create<ConfigMap>(
        `/api/v1/namespaces/${ns}/configmaps`,
        configMap(ns, "s", {}),
      );
      const jwt =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";
      recorder.record(
        { ...subject, apiVersion: "v1", kind: "ConfigMap" },
        "Warning",
        "VerificationFailed",
        `AADSTS700213: assertion ${jwt} rejected; request had client_secret=hunter2hunter2`,
      );
      await recorder.flush();
      const list = await client.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${ns}/events`);
      const text = JSON.stringify(list.items);
      expect(list.items).toHaveLength(1);
      expect(text).toContain("AADSTS700213");
      expect(text).not.toContain(jwt);
      expect(text).not.toContain("hunter2hunter2");
    } finally {
      await client.close();
    }
  });

  it("refuses a reason that is not UpperCamelCase and an object without kind", () => {
    const recorder = createEventRecorder({
      kubeConfig: cp.kubeConfig,
      component: "c",
      logger: testLogger("t"),
    });
    const obj = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", namespace: "default" } };
    expect(() => recorder.record(obj, "Normal", "not camel", "m")).toThrow(/UpperCamelCase/);
    expect(() => recorder.record({ metadata: { name: "x" } }, "Normal", "Ok", "m")).toThrow(
      /apiVersion and kind/,
    );
  });
});
