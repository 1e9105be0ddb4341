import { readdirSync, readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

/**
 * The chart's templates rendered the way Helm would for the two values they use (release name and
 * namespace, quoted or inside a string). Anything else in `{{ }}` fails loudly, so a template the tests cannot render is noticed.
 */
export interface ChartObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

const TEMPLATES = new URL("../../charts/agentid/templates/", import.meta.url);

export function renderChart(release: { name: string; namespace: string }): ChartObject[] {
  const objects: ChartObject[] = [];
  for (const file of readdirSync(TEMPLATES)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    const text = readFileSync(new URL(file, TEMPLATES), "utf8")
      .replaceAll("{{ .Release.Name | quote }}", JSON.stringify(release.name))
      .replaceAll("{{ .Release.Namespace | quote }}", JSON.stringify(release.namespace))
      // Inside a string (the guard's matchCondition names the manager's ServiceAccount).
      .replaceAll("{{ .Release.Namespace }}", release.namespace);
    const left = /\{\{.*?\}\}/.exec(text);
    if (left) throw new Error(`charts/agentid/templates/${file}: cannot render ${left[0]} in tests`);
    for (const doc of parseAllDocuments(text)) {
      const object = doc.toJSON() as ChartObject | null;
      if (object) objects.push(object);
    }
  }
  return objects;
}

export const RBAC_KINDS = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/** Where a namespace's RoleBindings live in the API. */
export const roleBindingsPath = (namespace: string): string =>
  `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`;

/**
 * The RoleBinding a namespace whose identities verify adds (docs/operator.md): the chart's
 * agentid-token-requester ClusterRole for the manager's ServiceAccount, which may then request that
 * namespace's ServiceAccount tokens. The chart binds it nowhere.
 */
export function tokenRequesterBinding(managerNamespace: string): ChartObject {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "agentid-token-requester" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "agentid-token-requester" },
    subjects: [{ kind: "ServiceAccount", name: "agentid-manager", namespace: managerNamespace }],
  };
}
