import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import type { AdmissionRequest } from "../../src/webhook/admission.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import type { NamespaceObject } from "../../src/webhook/reads.ts";
import { DEFAULT_RESOURCES, sidecarSettings } from "../../src/webhook/settings.ts";
import type { InjectionTarget, SidecarSettings } from "../../src/webhook/types.ts";

/** A rendered AgentIdentity as the mutation sees it (the API rendering is tested in src/api). */
export function target(overrides: Partial<InjectionTarget> = {}): InjectionTarget {
  return {
    identity: {
      name: "research-agent",
      namespace: "research",
      generation: 3,
      serviceAccountName: "research-agent",
    },
    port: 5000,
    env: [
      { name: "AzureAd__Instance", value: "https://login.microsoftonline.com/" },
      { name: "AzureAd__TenantId", value: "415a225c-58fe-4f1a-b44d-e994a7645ffc" },
      { name: "AzureAd__ClientId", value: "635df336-7566-4df6-891b-db8a571aea8e" },
      { name: "AzureAd__ClientCredentials__0__SourceType", value: "SignedAssertionFilePath" },
      {
        name: "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath",
        value: "/var/run/secrets/agentid/token/azure-identity-token",
      },
      { name: "Kestrel__Endpoints__Http__Url", value: "http://127.0.0.1:5000" },
    ],
    appEnv: [
      { name: "SIDECAR_URL", value: "http://127.0.0.1:5000" },
      { name: "AGENTID_AGENT_ID", value: "81c1b0a3-5f1f-4ddc-ac16-58eb49066eab" },
    ],
    projectedToken: true,
    tokenExpirationSeconds: 3600,
    secretNames: [],
    ...overrides,
  };
}

export function settings(overrides: Partial<SidecarSettings> = {}): SidecarSettings {
  return {
    ...sidecarSettings({
      image: "ghcr.io/agentid/sidecar:test",
      native: true,
      defaultResources: DEFAULT_RESOURCES,
    }),
    ...overrides,
  };
}

/**
 * The AdmissionRequest of a pod CREATE that opts in (the inject label): `name` or else a Deployment's
 * `generateName`; the identity by annotation when given; one app container unless `containers` says
 * otherwise (`env` goes to that app container).
 */
export function podCreateRequest(options: {
  namespace: string;
  uid?: string;
  user?: string;
  dryRun?: boolean;
  name?: string;
  identity?: string;
  serviceAccountName?: string;
  containers?: unknown[];
  env?: JsonObject[];
  volumes?: JsonObject[];
}): AdmissionRequest {
  const app = { name: "app", image: "a:1", ...(options.env ? { env: options.env } : {}) };
  return {
    uid: options.uid ?? "uid-1",
    operation: "CREATE",
    namespace: options.namespace,
    resource: "pods",
    subResource: "",
    object: {
      metadata: {
        ...(options.name ? { name: options.name } : { generateName: "research-" }),
        labels: { "agentid.io/inject": "true" },
        ...(options.identity ? { annotations: { "agentid.io/identity": options.identity } } : {}),
      },
      spec: {
        ...(options.serviceAccountName ? { serviceAccountName: options.serviceAccountName } : {}),
        containers: (options.containers ?? [app]) as JsonObject[],
        ...(options.volumes ? { volumes: options.volumes } : {}),
      },
    },
    oldObject: undefined,
    dryRun: options.dryRun ?? false,
    user: options.user ?? "alice@contoso.com",
  };
}

/** The golden fixtures' blueprint, Ready identity and namespace (test/fixtures/webhook/objects.yaml). */
export function fixtureObjects(): {
  blueprint: AgentIdentityBlueprint;
  identity: AgentIdentity;
  namespace: NamespaceObject;
} {
  const docs = parseAllDocuments(
    readFileSync(new URL("../fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
  ).map((d) => d.toJSON());
  return {
    blueprint: docs.find((d) => d.kind === "AgentIdentityBlueprint") as AgentIdentityBlueprint,
    identity: docs.find((d) => d.kind === "AgentIdentity") as AgentIdentity,
    namespace: docs.find((d) => d.kind === "Namespace") as NamespaceObject,
  };
}
