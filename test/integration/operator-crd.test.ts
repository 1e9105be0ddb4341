import { readFileSync } from "node:fs";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprintSpec, AgentIdentitySpec } from "../../src/api/types.ts";
import { createKubeClient, isApiError } from "../../src/kube/client.ts";
import { blueprintPath } from "../../src/operator/blueprint-reconciler.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { AGENT, BLUEPRINT, createBlueprint, createIdentity, ensureCrd } from "./operator-support.ts";

const cp = useControlPlane({ namespacePrefix: "crd" });
const kube = createKubeClient(cp.kubeConfig);
beforeAll(() => ensureCrd(cp.kubeConfig));
afterAll(() => kube.close());

async function refused(create: () => Promise<unknown>): Promise<string> {
  try {
    await create();
  } catch (error) {
    if (isApiError(error, 422)) return error.message;
    throw error;
  }
  throw new Error("the API server accepted an object it should refuse");
}

async function table(path: string): Promise<{
  columnDefinitions: Array<{ name: string; priority: number }>;
  rows: Array<{ cells: unknown[] }>;
}> {
  const agent = new Agent({ connect: { ca: cp.caPem, cert: cp.adminCertPem, key: cp.adminKeyPem } });
  try {
    const res = await request(`${cp.server}${path}?includeObject=None`, {
      dispatcher: agent,
      headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" },
    });
    return (await res.body.json()) as Awaited<ReturnType<typeof table>>;
  } finally {
    await agent.close();
  }
}

describe("the AgentIdentityBlueprint CRD on a real API server", () => {
  it("accepts a minimal blueprint and applies the defaults", async () => {
    const created = await createBlueprint(kube, cp.namespace);
    expect(created.metadata.namespace).toBeUndefined();
    expect(created.spec).toMatchObject({
      cloud: "AzurePublic",
      credential: { workloadIdentity: {} },
      admits: [{ agents: { allowed: [AGENT], create: false }, developmentSecrets: false }],
    });
  });

  it("accepts a Custom cloud, a namespace selector, Graph management and agent creation", async () => {
    const created = await createBlueprint(kube, cp.namespace, {
      cloud: "Custom",
      authorityHost: "https://127.0.0.1:9443/",
      credential: { workloadIdentity: { issuer: "https://issuer.example/" } },
      federation: { management: "Graph" },
      agentCreation: { credential: "Blueprint" },
      admits: [
        {
          namespaceSelector: { matchExpressions: [{ key: "team", operator: "In", values: ["a", "b"] }] },
          agents: { create: true },
          developmentSecrets: true,
        },
      ],
    });
    expect(created.spec.agentCreation?.credential).toBe("Blueprint");
  });

  it.each<[string, Partial<AgentIdentityBlueprintSpec>, string]>([
    ["a tenant that is not a GUID", { tenantId: "contoso.onmicrosoft.com" }, "tenantId must be a GUID"],
    ["Custom without an authority host", { cloud: "Custom" }, "authorityHost is required with cloud Custom"],
    [
      "an authority host with a named cloud",
      { authorityHost: "https://evil.example/" },
      "authorityHost is required with cloud Custom and not allowed",
    ],
    [
      "an http authority host",
      { cloud: "Custom", authorityHost: "http://login.example/" },
      "authorityHost must be an https URL",
    ],
    ["an unknown cloud", { cloud: "Mars" as "Custom" }, 'Unsupported value: "Mars"'],
    [
      "two credentials",
      { credential: { workloadIdentity: {}, managedIdentity: {} } },
      "exactly one of workloadIdentity or managedIdentity",
    ],
    [
      "Graph management with a managed identity",
      { credential: { managedIdentity: {} }, federation: { management: "Graph" } },
      "federation.management Graph needs credential.workloadIdentity",
    ],
    [
      "its own client id as an allowed agent",
      { admits: [{ agents: { allowed: [BLUEPRINT] } }] },
      "cannot contain the blueprint's own clientId",
    ],
    [
      "its own client id as an allowed agent in a later rule",
      {
        admits: [
          { namespaces: ["a"], agents: { allowed: [AGENT] } },
          { namespaces: ["b"], agents: { allowed: [BLUEPRINT.toUpperCase()] } },
        ],
      },
      "cannot contain the blueprint's own clientId",
    ],
    [
      "admits as one object (the shape before admits became a list of rules)",
      { admits: { namespaces: ["a"] } as unknown as [] },
      "spec.admits: Invalid value",
    ],
    ["a negative maxIdentities", { admits: [{ namespaces: ["a"], maxIdentities: -1 }] }, "maxIdentities"],
    [
      "In without values",
      { admits: [{ namespaceSelector: { matchExpressions: [{ key: "t", operator: "In" }] } }] },
      "In and NotIn need values",
    ],
  ])("refuses %s with a readable message", async (_name, spec, message) => {
    expect(await refused(() => createBlueprint(kube, cp.namespace, spec))).toContain(message);
  });

  it("prints client id, cloud, federation, Ready and its reason, counts, and the message under -o wide", async () => {
    await createBlueprint(kube, cp.namespace);
    const t = await table(blueprintPath());
    expect(t.columnDefinitions.map((c) => c.name)).toEqual([
      "Name",
      "Client ID",
      "Cloud",
      "Federation",
      "Ready",
      "Reason",
      "Identities",
      "Credentials",
      "Age",
      "Message",
    ]);
    expect(t.columnDefinitions.find((c) => c.name === "Message")?.priority).toBe(1);
  });
});

describe("the AgentIdentity CRD on a real API server", () => {
  it("accepts a minimal identity and applies the defaults", async () => {
    const created = await createIdentity(kube, cp.namespace, "minimal");
    expect(created.spec).toMatchObject({
      blueprintRef: { name: cp.namespace },
      agent: { clientId: AGENT, deletionPolicy: "Delete" },
      serviceAccountName: "minimal",
    });
  });

  it("accepts a full identity, defaulting inside what is set", async () => {
    const created = await createIdentity(kube, cp.namespace, "full", {
      agent: { create: { displayName: "Research agent" }, deletionPolicy: "Retain" },
      clientSecretRef: { name: "bp-secret", key: "secret" },
      downstreamApis: [
        {
          name: "graph-app",
          baseUrl: "https://graph.microsoft.com/v1.0/",
          scopes: ["https://graph.microsoft.com/.default"],
          requestAppToken: true,
        },
        {
          name: "me",
          baseUrl: "https://graph.microsoft.com/v1.0/",
          scopes: ["User.Read"],
          httpMethod: "POST",
          extraHeaders: { "x-trace": "1" },
          extraQueryParameters: { "api-version": "2" },
        },
      ],
      sidecar: {
        resources: { requests: { cpu: "50m", memory: "64Mi" } },
        allowOverrides: { getAuthorizationHeaderUnauthenticated: true },
        logLevel: "Debug",
      },
    });
    expect(created.spec.downstreamApis?.find((a) => a.name === "me")?.requestAppToken).toBe(false);
    expect(created.spec.sidecar).toMatchObject({
      port: 5000,
      tokenExpirationSeconds: 3600,
      allowBlueprintToken: false,
      allowFmiPathOverride: false,
    });
  });

  it.each<[string, Partial<AgentIdentitySpec>, string]>([
    [
      "both agent forms",
      { agent: { clientId: AGENT, create: { displayName: "x" } } },
      "agent must set exactly one of clientId or create",
    ],
    ["no agent form", { agent: {} }, "agent must set exactly one of clientId or create"],
    ["an agent that is not a GUID", { agent: { clientId: "research" } }, "agent.clientId must be a GUID"],
    [
      "an http API",
      { downstreamApis: [{ name: "g", baseUrl: "http://graph/", scopes: ["s"] }] },
      "baseUrl must be an https URL",
    ],
    [
      "an app-token API with a delegated scope",
      {
        downstreamApis: [
          {
            name: "g",
            baseUrl: "https://graph.microsoft.com/",
            scopes: ["User.Read"],
            requestAppToken: true,
          },
        ],
      },
      "needs exactly one scope ending in /.default",
    ],
    [
      "an API name with __",
      { downstreamApis: [{ name: "a__b", baseUrl: "https://g/", scopes: ["s"] }] },
      "a downstream API name must be",
    ],
    [
      "two APIs with one name",
      {
        downstreamApis: [
          { name: "g", baseUrl: "https://g/", scopes: ["s"] },
          { name: "g", baseUrl: "https://h/", scopes: ["s"] },
        ],
      },
      "Duplicate value",
    ],
    [
      "a reserved header",
      {
        downstreamApis: [
          { name: "g", baseUrl: "https://g/", scopes: ["s"], extraHeaders: { Authorization: "x" } },
        ],
      },
      "extraHeaders cannot set Authorization",
    ],
    ["a privileged port", { sidecar: { port: 80 } }, "should be greater than or equal to 1024"],
    [
      "a token lifetime under ten minutes",
      { sidecar: { tokenExpirationSeconds: 60 } },
      "should be greater than or equal to 600",
    ],
    [
      "an upper-case ServiceAccount",
      { serviceAccountName: "Agent" },
      "serviceAccountName must be a lowercase DNS subdomain name",
    ],
  ])("refuses %s with a readable message", async (_name, spec, message) => {
    expect(await refused(() => createIdentity(kube, cp.namespace, "bad", spec))).toContain(message);
  });

  it("keeps blueprintRef and the agent's form immutable", async () => {
    const created = await createIdentity(kube, cp.namespace, "immutable");
    const path = identityPath(cp.namespace, "immutable");
    expect(
      await refused(() =>
        kube.replace(path, { ...created, spec: { ...created.spec, blueprintRef: { name: "other" } } }),
      ),
    ).toContain("blueprintRef is immutable");
    expect(
      await refused(() =>
        kube.replace(path, {
          ...created,
          spec: { ...created.spec, agent: { create: { displayName: "x" } } },
        }),
      ),
    ).toContain("agent cannot switch between clientId and create");
  });

  it("keeps serviceAccountName immutable, while updates that leave it as it is still pass", async () => {
    // A rename would leave the old account's federated credential trusted until a reconcile removed it
    // (indefinitely when writing the new one fails): a new AgentIdentity is the way to another account.
    const created = await createIdentity(kube, cp.namespace, "sa-immutable");
    const path = identityPath(cp.namespace, "sa-immutable");
    expect(
      await refused(() =>
        kube.replace(path, { ...created, spec: { ...created.spec, serviceAccountName: "another" } }),
      ),
    ).toContain("serviceAccountName is immutable; create a new AgentIdentity");
    expect(
      await refused(() => kube.patch(path, "merge", { spec: { serviceAccountName: "another" } })),
    ).toContain("serviceAccountName is immutable");
    // A merge patch that does not mention it keeps it; a replace that repeats it passes the rule.
    const patched = await kube.patch<AgentIdentity>(path, "merge", {
      spec: { sidecar: { logLevel: "Debug" } },
    });
    expect(patched.spec.serviceAccountName).toBe(created.spec.serviceAccountName);
    const replaced = await kube.replace<AgentIdentity>(path, {
      ...patched,
      spec: { ...patched.spec, sidecar: { logLevel: "Warning" } },
    });
    expect(replaced.spec.serviceAccountName).toBe(created.spec.serviceAccountName);
  });

  it("has a status subresource: a spec write cannot change status", async () => {
    const created = await createIdentity(kube, cp.namespace, "status");
    const updated = await kube.replace<AgentIdentity>(identityPath(cp.namespace, "status"), {
      ...created,
      status: { agent: { clientId: BLUEPRINT, created: true } },
    });
    expect(updated.status?.agent).toBeUndefined();
  });

  it("refuses a status condition that is not a metav1.Condition", async () => {
    const created = await createIdentity(kube, cp.namespace, "cond");
    const message = await refused(() =>
      kube.replace(`${identityPath(cp.namespace, "cond")}/status`, {
        ...created,
        status: {
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "not camel case!",
              message: "",
              lastTransitionTime: "2026-01-01T00:00:00Z",
            },
          ],
        },
      }),
    );
    expect(message).toContain("reason");
  });

  it("keeps status.lastVerification.transientSince (the transient backoff's onset), refusing a non-date", async () => {
    const created = await createIdentity(kube, cp.namespace, "since");
    const path = `${identityPath(cp.namespace, "since")}/status`;
    const lastVerification = {
      time: "2026-01-01T00:02:00Z",
      fingerprint: "f",
      transientSince: "2026-01-01T00:00:00Z",
    };
    const written = await kube.replace<AgentIdentity>(path, { ...created, status: { lastVerification } });
    expect(written.status?.lastVerification).toEqual(lastVerification);
    const message = await refused(() =>
      kube.replace(path, {
        ...written,
        status: { lastVerification: { ...lastVerification, transientSince: "yesterday" } },
      }),
    );
    expect(message).toContain("transientSince");
  });

  it("serves the short names of both kinds", async () => {
    const resources = await kube.get<{ resources: Array<{ name: string; shortNames?: string[] }> }>(
      "/apis/agentid.io/v1alpha1",
    );
    expect(resources.resources.find((r) => r.name === "agentidentities")?.shortNames).toEqual([
      "agentid",
      "aid",
    ]);
    expect(resources.resources.find((r) => r.name === "agentidentityblueprints")?.shortNames).toEqual([
      "blueprint",
      "aib",
    ]);
  });

  it("publishes the field descriptions kubectl explain reads (OpenAPI v3)", async () => {
    type Schema = { description?: string; properties?: Record<string, Schema>; items?: Schema };
    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let schemas: Record<string, Schema> = {};
    await expect
      .poll(
        async () => {
          const doc = await kube.get<{ components: { schemas: Record<string, Schema> } }>(
            "/openapi/v3/apis/agentid.io/v1alpha1",
          );
          schemas = doc.components.schemas;
          return Boolean(
            schemas["io.agentid.v1alpha1.AgentIdentity"] &&
              schemas["io.agentid.v1alpha1.AgentIdentityBlueprint"],
          );
        },
        { message: "the agentid.io OpenAPI v3 schemas" },
      )
      .toBe(true);
    expect(
      schemas["io.agentid.v1alpha1.AgentIdentity"]?.properties?.spec?.properties?.blueprintRef?.description,
    ).toContain("AgentIdentityBlueprint");
    expect(
      schemas["io.agentid.v1alpha1.AgentIdentityBlueprint"]?.properties?.spec?.properties?.admits
        ?.description,
    ).toContain("Who may use this blueprint");
    // kubectl explain teaches the cap's union semantics: one rule without a cap lifts every cap.
    const admits =
      schemas["io.agentid.v1alpha1.AgentIdentityBlueprint"]?.properties?.spec?.properties?.admits;
    expect(admits?.description).toContain("no cap at all when any of them leaves maxIdentities unset");
    expect(admits?.items?.properties?.maxIdentities?.description).toContain(
      "one broad rule without a cap (an empty namespaceSelector, say) lifts the cap of every namespace it admits",
    );
    // And that serviceAccountName cannot change.
    expect(
      schemas["io.agentid.v1alpha1.AgentIdentity"]?.properties?.spec?.properties?.serviceAccountName
        ?.description,
    ).toContain("Immutable");
  });

  it("prints blueprint, agent, ServiceAccount, Ready and its reason, and the message under -o wide", async () => {
    await createIdentity(kube, cp.namespace, "table");
    const t = await table(identityPath(cp.namespace));
    expect(t.columnDefinitions.map((c) => c.name)).toEqual([
      "Name",
      "Blueprint",
      "Agent",
      "ServiceAccount",
      "Ready",
      "Reason",
      "Age",
      "Message",
    ]);
    expect(t.columnDefinitions.find((c) => c.name === "Message")?.priority).toBe(1);
    expect(t.rows[0]?.cells.slice(1, 2)).toEqual([cp.namespace]);
  });
});

describe("the examples", () => {
  const load = (file: string) =>
    parseAllDocuments(readFileSync(new URL(`../../examples/${file}`, import.meta.url), "utf8")).map(
      (d) => d.toJSON() as { metadata: { name: string; namespace?: string }; spec: Record<string, unknown> },
    );

  it("are accepted by the API server as they are (names moved into the test's namespace)", async () => {
    for (const bp of load("agentidentityblueprint.yaml")) {
      const created = await admin(blueprintPath(), {
        ...bp,
        metadata: { name: `${bp.metadata.name}-${cp.namespace}` },
      });
      expect(created.metadata.name).toBe(`${bp.metadata.name}-${cp.namespace}`);
    }
    const identities = load("agentidentity.yaml");
    expect(identities.length).toBeGreaterThanOrEqual(2);
    for (const identity of identities) {
      await admin(identityPath(cp.namespace), {
        ...identity,
        metadata: { ...identity.metadata, namespace: cp.namespace },
      });
    }
  });
});

async function admin(path: string, body: unknown): Promise<{ metadata: { name: string } }> {
  return kube.create<{ metadata: { name: string } }>(path, body);
}
