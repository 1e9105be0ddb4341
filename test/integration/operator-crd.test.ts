import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity, AgentIdentitySpec } from "../../src/api/types.ts";
import { createKubeClient, isApiError } from "../../src/kube/client.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { BLUEPRINT, createIdentity, ensureCrd } from "./operator-support.ts";

const cp = useControlPlane({ namespacePrefix: "crd" });
const kube = createKubeClient(cp.kubeConfig);
beforeAll(() => ensureCrd(cp.kubeConfig));
afterAll(() => kube.close());

async function refusal(spec: Partial<AgentIdentitySpec>, name = "bad"): Promise<string> {
  try {
    await createIdentity(kube, cp.namespace, name, spec);
  } catch (error) {
    if (isApiError(error, 422)) return error.message;
    throw error;
  }
  throw new Error("the API server accepted an AgentIdentity it should refuse");
}

describe("the AgentIdentity CRD on a real API server", () => {
  it("accepts a minimal identity and applies the defaults", async () => {
    const created = await createIdentity(kube, cp.namespace, "minimal");
    expect(created.spec).toMatchObject({
      instance: "https://login.microsoftonline.com/",
      blueprint: { clientId: BLUEPRINT, credential: { workloadIdentity: {} } },
      createServiceAccount: true,
      serviceAccountName: "minimal",
    });
  });

  it("accepts a full identity", async () => {
    const created = await createIdentity(kube, cp.namespace, "full", {
      agentId: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d",
      instance: "https://127.0.0.1:9443/",
      blueprint: {
        clientId: BLUEPRINT,
        credential: { clientSecret: { secretRef: { name: "bp-secret", key: "secret" } } },
      },
      downstreamApis: {
        "graph-app": {
          baseUrl: "https://graph.microsoft.com/v1.0/",
          scopes: ["https://graph.microsoft.com/.default"],
          requestAppToken: true,
        },
        me: {
          baseUrl: "https://graph.microsoft.com/v1.0/",
          scopes: ["User.Read"],
          httpMethod: "POST",
          extraHeaders: { "x-trace": "1" },
          extraQueryParameters: { "api-version": "2" },
        },
      },
      sidecar: {
        port: 5001,
        resources: { requests: { cpu: "50m", memory: "64Mi" } },
        allowOverrides: { getAuthorizationHeaderUnauthenticated: true },
        logLevel: "Debug",
      },
      federation: { mode: "Graph", issuer: "https://issuer.example/" },
    });
    expect(created.spec.downstreamApis?.me?.requestAppToken).toBe(false);
  });

  it.each<[string, Partial<AgentIdentitySpec>, string]>([
    ["a tenant that is not a GUID", { tenantId: "contoso.onmicrosoft.com" }, "tenantId must be a GUID"],
    [
      "two credentials",
      { blueprint: { clientId: BLUEPRINT, credential: { workloadIdentity: {}, managedIdentity: {} } } },
      "exactly one of workloadIdentity, managedIdentity or clientSecret",
    ],
    [
      "an empty credential",
      { blueprint: { clientId: BLUEPRINT, credential: {} } },
      "exactly one of workloadIdentity, managedIdentity or clientSecret",
    ],
    ["an http instance", { instance: "http://login.microsoftonline.com/" }, "instance must be an https URL"],
    [
      "an http API",
      { downstreamApis: { g: { baseUrl: "http://graph/", scopes: ["s"] } } },
      "baseUrl must be an https URL",
    ],
    [
      "an app-token API with a delegated scope",
      {
        downstreamApis: {
          g: { baseUrl: "https://graph.microsoft.com/", scopes: ["User.Read"], requestAppToken: true },
        },
      },
      "needs exactly one scope ending in /.default",
    ],
    [
      "an API name with __",
      { downstreamApis: { a__b: { baseUrl: "https://g/", scopes: ["s"] } } },
      "downstreamApis names must be",
    ],
    [
      "a reserved header",
      {
        downstreamApis: { g: { baseUrl: "https://g/", scopes: ["s"], extraHeaders: { Authorization: "x" } } },
      },
      "extraHeaders cannot set Authorization",
    ],
    ["a privileged port", { sidecar: { port: 80 } }, "should be greater than or equal to 1024"],
    ["agentId equal to the blueprint", { agentId: BLUEPRINT }, "cannot equal blueprint.clientId"],
    [
      "an upper-case ServiceAccount",
      { serviceAccountName: "Agent" },
      "serviceAccountName must be a lowercase DNS subdomain name",
    ],
    ["an unknown federation mode", { federation: { mode: "Auto" as "Manual" } }, 'Unsupported value: "Auto"'],
  ])("refuses %s with a readable message", async (_name, spec, message) => {
    expect(await refusal(spec)).toContain(message);
  });

  it("has a status subresource: a spec write cannot change status", async () => {
    const created = await createIdentity(kube, cp.namespace, "status");
    const updated = await kube.replace<AgentIdentity>(identityPath(cp.namespace, "status"), {
      ...created,
      status: { serviceAccount: "sneaky" },
    });
    expect(updated.status?.serviceAccount).toBeUndefined();
  });

  it("serves the short names", async () => {
    const resources = await kube.get<{
      resources: Array<{ name: string; shortNames?: string[]; categories?: string[] }>;
    }>("/apis/agentid.io/v1alpha1");
    expect(resources.resources.find((r) => r.name === "agentidentities")?.shortNames).toEqual([
      "agentid",
      "aid",
    ]);
  });

  it("publishes the field descriptions kubectl explain reads (OpenAPI v3)", async () => {
    type Schema = { description?: string; properties?: Record<string, Schema> };
    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let schema: Schema | undefined;
    await expect
      .poll(
        async () => {
          const doc = await kube.get<{ components: { schemas: Record<string, Schema> } }>(
            "/openapi/v3/apis/agentid.io/v1alpha1",
          );
          schema = doc.components.schemas["io.agentid.v1alpha1.AgentIdentity"];
          return schema;
        },
        { message: "the AgentIdentity OpenAPI v3 schema" },
      )
      .toBeDefined();
    expect(schema?.properties?.spec?.properties?.tenantId?.description).toContain("Directory (tenant) id");
    expect(schema?.properties?.spec?.properties?.blueprint?.description).toContain(
      "agent identity blueprint",
    );
  });

  it("prints the Ready, Verified, Agent, ServiceAccount and Age columns", async () => {
    await createIdentity(kube, cp.namespace, "table", { agentId: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d" });
    const agent = new Agent({ connect: { ca: cp.caPem, cert: cp.adminCertPem, key: cp.adminKeyPem } });
    try {
      const res = await request(`${cp.server}${identityPath(cp.namespace)}`, {
        dispatcher: agent,
        headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" },
      });
      const table = (await res.body.json()) as {
        columnDefinitions: Array<{ name: string }>;
        rows: Array<{ cells: unknown[] }>;
      };
      expect(table.columnDefinitions.map((c) => c.name)).toEqual([
        "Name",
        "Ready",
        "Verified",
        "Agent",
        "ServiceAccount",
        "Age",
      ]);
      expect(table.rows[0]?.cells.slice(3, 5)).toEqual(["9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d", "table"]);
    } finally {
      await agent.close();
    }
  });
});
