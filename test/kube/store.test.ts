import { describe, expect, it } from "vitest";
import {
  createLineSplitter,
  isKubeObject,
  type KubeObject,
  keyOf,
  ObjectStore,
  objectKey,
  parseWatchEvent,
  splitKey,
} from "../../src/kube/store.ts";

function obj(name: string, rv: string, extra: { ns?: string; uid?: string } = {}): KubeObject {
  return {
    metadata: { name, namespace: extra.ns ?? "ns", resourceVersion: rv, uid: extra.uid ?? `uid-${name}` },
  };
}

describe("keys", () => {
  it("joins and splits namespace/name and cluster-scoped names", () => {
    expect(objectKey("ns", "a")).toBe("ns/a");
    expect(objectKey(undefined, "a")).toBe("a");
    expect(splitKey("ns/a")).toEqual({ namespace: "ns", name: "a" });
    expect(splitKey("a")).toEqual({ namespace: undefined, name: "a" });
    expect(keyOf(obj("a", "1"))).toBe("ns/a");
  });
});

describe("ObjectStore.apply (watch events)", () => {
  it("adds, updates only on a new resourceVersion, and deletes", () => {
    const store = new ObjectStore<KubeObject>();
    expect(store.apply("ADDED", obj("a", "1"))).toEqual([{ type: "add", obj: obj("a", "1") }]);
    // A replayed event with the same version (e.g. after a watch restart) is not an update.
    expect(store.apply("MODIFIED", obj("a", "1"))).toEqual([]);
    expect(store.apply("MODIFIED", obj("a", "2"))).toEqual([
      { type: "update", obj: obj("a", "2"), old: obj("a", "1") },
    ]);
    expect(store.apply("DELETED", obj("a", "3"))).toEqual([{ type: "delete", obj: obj("a", "3") }]);
    expect(store.apply("DELETED", obj("a", "3"))).toEqual([]);
    expect(store.size()).toBe(0);
  });

  it("turns a MODIFIED with a new uid into delete + add", () => {
    const store = new ObjectStore<KubeObject>();
    store.apply("ADDED", obj("a", "1", { uid: "one" }));
    const events = store.apply("MODIFIED", obj("a", "5", { uid: "two" }));
    expect(events.map((e) => e.type)).toEqual(["delete", "add"]);
  });
});

describe("ObjectStore.replace (relist diff)", () => {
  it("delivers deletes that happened during a gap, plus adds and changed objects only", () => {
    const store = new ObjectStore<KubeObject>();
    store.replace([obj("keep", "1"), obj("change", "1"), obj("gone", "1", { ns: "other" })]);
    const events = store.replace([obj("keep", "1"), obj("change", "2"), obj("new", "3")]);
    expect(events).toEqual([
      { type: "delete", obj: obj("gone", "1", { ns: "other" }) },
      { type: "update", obj: obj("change", "2"), old: obj("change", "1") },
      { type: "add", obj: obj("new", "3") },
    ]);
    expect(store.keys().sort()).toEqual(["ns/change", "ns/keep", "ns/new"]);
  });

  it("treats a re-created object (new uid) as delete + add", () => {
    const store = new ObjectStore<KubeObject>();
    store.replace([obj("a", "1", { uid: "one" })]);
    const events = store.replace([obj("a", "9", { uid: "two" })]);
    expect(events.map((e) => [e.type, e.obj.metadata.uid])).toEqual([
      ["delete", "one"],
      ["add", "two"],
    ]);
  });

  it("lists per namespace and gets by namespace and name", () => {
    const store = new ObjectStore<KubeObject>();
    store.replace([
      obj("a", "1"),
      obj("b", "1", { ns: "x" }),
      { metadata: { name: "cluster", resourceVersion: "1" } },
    ]);
    expect(store.list("x").map((o) => o.metadata.name)).toEqual(["b"]);
    expect(store.list()).toHaveLength(3);
    expect(store.get(undefined, "cluster")?.metadata.name).toBe("cluster");
    expect(store.get("ns", "a")?.metadata.name).toBe("a");
    expect(store.get("x", "a")).toBeUndefined();
  });

  it("keeps the per-namespace lists right through updates, deletes and a relist", () => {
    const store = new ObjectStore<KubeObject>();
    store.apply("ADDED", obj("a", "1", { ns: "x" }));
    store.apply("ADDED", obj("b", "1", { ns: "x" }));
    store.apply("ADDED", obj("c", "1", { ns: "y" }));
    store.apply("MODIFIED", obj("a", "2", { ns: "x" }));
    const names = (ns: string) =>
      store.list(ns).map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`);
    expect(names("x").sort()).toEqual(["a@2", "b@1"]);
    store.apply("DELETED", obj("b", "3", { ns: "x" }));
    expect(names("x")).toEqual(["a@2"]);
    // A relist that no longer has x/a or y/c: both namespaces empty, z filled.
    store.replace([obj("d", "5", { ns: "z" })]);
    expect(names("x")).toEqual([]);
    expect(names("y")).toEqual([]);
    expect(names("z")).toEqual(["d@5"]);
    expect(store.list()).toHaveLength(1);
  });
});

describe("createLineSplitter", () => {
  it("joins lines split across chunks, including a multi-byte character split in half", () => {
    const splitter = createLineSplitter();
    const bytes = Buffer.from('{"a":"é"}\n{"b":1}\n{"c"', "utf8");
    const cut = bytes.indexOf(0xa9); // second byte of é
    expect(splitter.push(bytes.subarray(0, cut))).toEqual([]);
    expect(splitter.push(bytes.subarray(cut))).toEqual(['{"a":"é"}', '{"b":1}']);
    expect(splitter.rest()).toBe('{"c"');
    expect(splitter.push(":2}\n\n")).toEqual(['{"c":2}']);
  });
});

describe("parseWatchEvent", () => {
  it("parses object events, bookmarks and errors", () => {
    const added = parseWatchEvent(JSON.stringify({ type: "ADDED", object: obj("a", "1") }));
    expect(added).toEqual({ type: "ADDED", object: obj("a", "1") });
    const bookmark = parseWatchEvent(
      JSON.stringify({ type: "BOOKMARK", object: { kind: "X", metadata: { resourceVersion: "42" } } }),
    );
    expect(bookmark).toEqual({ type: "BOOKMARK", resourceVersion: "42" });
    const gone = parseWatchEvent(
      JSON.stringify({
        type: "ERROR",
        object: { kind: "Status", code: 410, reason: "Expired", message: "too old resource version" },
      }),
    );
    expect(gone).toEqual({
      type: "ERROR",
      code: 410,
      reason: "Expired",
      message: "too old resource version",
    });
  });

  it.each([
    ["not json", /JSON|Unexpected/],
    ["[]", /unknown watch event type/],
    [JSON.stringify({ type: "ADDED", object: { metadata: {} } }), /metadata.name/],
    [JSON.stringify({ type: "BOOKMARK", object: {} }), /bookmark/],
    [JSON.stringify({ type: "SURPRISE", object: obj("a", "1") }), /unknown watch event type/],
  ])("refuses %s", (line, message) => {
    expect(() => parseWatchEvent(line)).toThrow(message);
  });

  it("accepts only objects with a string name as KubeObjects", () => {
    expect(isKubeObject({ metadata: { name: "a" } })).toBe(true);
    expect(isKubeObject({ metadata: { name: "" } })).toBe(false);
    expect(isKubeObject({ metadata: { name: "a", namespace: 3 } })).toBe(false);
    expect(isKubeObject(null)).toBe(false);
  });
});
