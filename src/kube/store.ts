/**
 * The informer's object cache and the pure rules that turn list results and watch events into handler
 * events. No I/O here: the informer feeds it, tests drive it directly.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: unknown[];
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export type StoreEvent<T> =
  | { type: "add"; obj: T }
  | { type: "update"; obj: T; old: T }
  | { type: "delete"; obj: T };

/** `namespace/name`, or `name` for cluster-scoped objects: the key the work queue uses too. */
export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export function keyOf(obj: KubeObject): string {
  return objectKey(obj.metadata.namespace, obj.metadata.name);
}

/** Splits a key made by objectKey. */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const slash = key.indexOf("/");
  return slash < 0
    ? { namespace: undefined, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** Narrows unknown JSON to a KubeObject with a string name; anything else is refused. */
export function isKubeObject(value: unknown): value is KubeObject {
  if (!value || typeof value !== "object") return false;
  const metadata = (value as { metadata?: unknown }).metadata;
  if (!metadata || typeof metadata !== "object") return false;
  const { name, namespace } = metadata as { name?: unknown; namespace?: unknown };
  return (
    typeof name === "string" && name.length > 0 && (namespace === undefined || typeof namespace === "string")
  );
}

/** Same object, same state: a new uid means the object was deleted and re-created under the same name. */
function sameVersion(a: KubeObject, b: KubeObject): boolean {
  return (
    a.metadata.uid === b.metadata.uid &&
    a.metadata.resourceVersion !== undefined &&
    a.metadata.resourceVersion === b.metadata.resourceVersion
  );
}

export class ObjectStore<T extends KubeObject> {
  readonly #objects = new Map<string, T>();
  /**
   * The same objects by namespace, so that `list(namespace)` costs what that namespace holds rather than
   * the whole cache: handlers ask for a namespace's objects on every event, and with 10,000 objects a
   * full scan each time made a sync quadratic.
   */
  readonly #byNamespace = new Map<string, Map<string, T>>();

  #set(key: string, obj: T): void {
    this.#objects.set(key, obj);
    const ns = obj.metadata.namespace ?? "";
    let bucket = this.#byNamespace.get(ns);
    if (!bucket) {
      bucket = new Map();
      this.#byNamespace.set(ns, bucket);
    }
    bucket.set(key, obj);
  }

  #delete(key: string, obj: T): void {
    this.#objects.delete(key);
    const ns = obj.metadata.namespace ?? "";
    const bucket = this.#byNamespace.get(ns);
    bucket?.delete(key);
    if (bucket?.size === 0) this.#byNamespace.delete(ns);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#objects.get(objectKey(namespace, name));
  }

  getByKey(key: string): T | undefined {
    return this.#objects.get(key);
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.#objects.values()];
    return [...(this.#byNamespace.get(namespace)?.values() ?? [])];
  }

  keys(): string[] {
    return [...this.#objects.keys()];
  }

  size(): number {
    return this.#objects.size;
  }

  /** Applies an ADDED/MODIFIED (upsert) or DELETED watch event; answers the handler event, if any. */
  apply(type: "ADDED" | "MODIFIED" | "DELETED", obj: T): StoreEvent<T>[] {
    const key = keyOf(obj);
    const old = this.#objects.get(key);
    if (type === "DELETED") {
      if (!old) return [];
      this.#delete(key, old);
      return [{ type: "delete", obj }];
    }
    return this.#upsert(key, obj, old);
  }

  /**
   * Replaces the whole cache with a fresh list and answers what changed: objects missing from the list
   * were deleted while we were not watching (delivered with their last known state), new ones added,
   * changed ones updated. Unchanged objects produce nothing.
   */
  replace(items: readonly T[]): StoreEvent<T>[] {
    const events: StoreEvent<T>[] = [];
    const fresh = new Map<string, T>();
    for (const item of items) fresh.set(keyOf(item), item);
    for (const [key, old] of this.#objects) {
      if (!fresh.has(key)) {
        this.#delete(key, old);
        events.push({ type: "delete", obj: old });
      }
    }
    for (const [key, item] of fresh) events.push(...this.#upsert(key, item, this.#objects.get(key)));
    return events;
  }

  #upsert(key: string, obj: T, old: T | undefined): StoreEvent<T>[] {
    this.#set(key, obj);
    if (!old) return [{ type: "add", obj }];
    if (sameVersion(old, obj)) return [];
    // Re-created under the same name while we were away: handlers see the old one go and the new one come.
    if (old.metadata.uid && obj.metadata.uid && old.metadata.uid !== obj.metadata.uid) {
      return [
        { type: "delete", obj: old },
        { type: "add", obj },
      ];
    }
    return [{ type: "update", obj, old }];
  }
}

/** Splits a byte stream of newline-delimited JSON into complete lines, keeping partial ones for later. */
export function createLineSplitter(): { push(chunk: Buffer | string): string[]; rest(): string } {
  const decoder = new TextDecoder("utf-8");
  let pending = "";
  return {
    push(chunk) {
      pending += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      return lines.filter((line) => line.trim().length > 0);
    },
    rest() {
      return pending;
    },
  };
}

export type WatchEvent<T> =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; object: T }
  | { type: "BOOKMARK"; resourceVersion: string }
  | { type: "ERROR"; code: number; reason: string; message: string };

/** Parses one watch line; throws on anything that is not a well-formed watch event. */
export function parseWatchEvent<T extends KubeObject>(line: string): WatchEvent<T> {
  const parsed: unknown = JSON.parse(line);
  if (!parsed || typeof parsed !== "object") throw new Error("watch event is not an object");
  const { type, object } = parsed as { type?: unknown; object?: unknown };
  if (type === "ERROR") {
    const status = (object ?? {}) as { code?: unknown; reason?: unknown; message?: unknown };
    return {
      type: "ERROR",
      code: typeof status.code === "number" ? status.code : 0,
      reason: typeof status.reason === "string" ? status.reason : "",
      message: typeof status.message === "string" ? status.message : "",
    };
  }
  if (type === "BOOKMARK") {
    const rv = (object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata
      ?.resourceVersion;
    if (typeof rv !== "string" || !rv) throw new Error("bookmark without resourceVersion");
    return { type: "BOOKMARK", resourceVersion: rv };
  }
  if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") {
    if (!isKubeObject(object)) throw new Error(`${type} event without an object with metadata.name`);
    return { type, object: object as T };
  }
  throw new Error(`unknown watch event type ${JSON.stringify(type)}`);
}
