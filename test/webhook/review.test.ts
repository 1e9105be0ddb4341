import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity } from "../../src/api/types.ts";
import { createLogger } from "../../src/lib/log.ts";
import type { AdmissionRequest } from "../../src/webhook/admission.ts";
import { createReviewer, type Resolved } from "../../src/webhook/review.ts";
import { settings, target } from "./support.ts";

/** How a review waits for an answer still to come (the rest of the review: golden.test.ts). */

const identity = parseAllDocuments(
  readFileSync(new URL("../fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
)
  .map((d) => d.toJSON())
  .find((d) => d.kind === "AgentIdentity") as AgentIdentity;

const request: AdmissionRequest = {
  uid: "uid-1",
  operation: "CREATE",
  namespace: "research",
  resource: "pods",
  subResource: "",
  object: {
    metadata: { name: "p", labels: { "agentid.io/inject": "true" } },
    spec: { serviceAccountName: "research-agent", containers: [{ name: "app", image: "a:1" }] },
  },
  oldObject: undefined,
  dryRun: false,
  user: "alice@contoso.com",
};

/** A thenable that is not this realm's Promise (another library's, or one from another realm). */
function thenable<T>(value: T): PromiseLike<T> {
  return {
    // biome-ignore lint/suspicious/noThenProperty: the point of the test is an object with a then method
    then: <R1 = T, R2 = never>(onFulfilled?: ((v: T) => R1 | PromiseLike<R1>) | null) =>
      Promise.resolve(value).then(onFulfilled) as PromiseLike<R1 | R2>,
  };
}

function reviewer(resolve: () => Resolved | PromiseLike<Resolved>, list: () => PromiseLike<AgentIdentity[]>) {
  return createReviewer({
    identities: {
      cached: () => undefined,
      cachedList: () => [],
      read: async () => undefined,
      list: list as () => Promise<AgentIdentity[]>,
    },
    resolve: resolve as () => Resolved | Promise<Resolved>,
    settings: () => settings(),
    logger: createLogger({ name: "review", level: "silent" }),
  });
}

describe("review", () => {
  it("awaits any thenable resolve answers with, not only a Promise", async () => {
    const review = reviewer(
      () => thenable<Resolved>({ ok: true, target: target() }),
      () => thenable([identity]),
    );
    const { response, outcome } = await review(request);
    expect(response.allowed).toBe(true);
    expect(outcome).toBe("injected");
  });

  it("takes a plain answer as it is", async () => {
    const review = reviewer(
      () => ({ ok: true, target: target() }),
      async () => [identity],
    );
    expect((await review(request)).outcome).toBe("injected");
  });
});
