/** The AdmissionReview bench/webhook sends (a module of its own, without side effects). */

/** A typical opted-in pod as the API server sends it in an AdmissionReview (CREATE, no name yet). */
export function typicalReview(): string {
  const container = (name: string, image: string, extra: Record<string, unknown> = {}) => ({
    name,
    image,
    env: [
      { name: "LOG_LEVEL", value: "info" },
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ],
    resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
    volumeMounts: [
      { name: "data", mountPath: "/data" },
      {
        name: "kube-api-access-x7k2p",
        mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
        readOnly: true,
      },
    ],
    terminationMessagePath: "/dev/termination-log",
    terminationMessagePolicy: "File",
    imagePullPolicy: "IfNotPresent",
    ...extra,
  });
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "7b9f7f2e-5f0c-4a37-9c43-2c3f0f7f3b21",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      requestResource: { group: "", version: "v1", resource: "pods" },
      namespace: "research",
      operation: "CREATE",
      userInfo: {
        username: "system:serviceaccount:kube-system:replicaset-controller",
        groups: ["system:serviceaccounts"],
      },
      object: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          generateName: "research-7c9f8d6b5-",
          namespace: "research",
          labels: { app: "research", "agentid.io/inject": "true", "pod-template-hash": "7c9f8d6b5" },
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: "research-7c9f8d6b5",
              uid: "0b7e6f3e-1c41-4b8e-9d1c-8c4b0a6f2d11",
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: {
          serviceAccountName: "research-agent",
          initContainers: [
            container("log-shipper", "ghcr.io/contoso/shipper:2", { restartPolicy: "Always" }),
          ],
          containers: [
            container("app", "ghcr.io/contoso/research:1.4", {
              ports: [{ containerPort: 8080, name: "http", protocol: "TCP" }],
            }),
            container("worker", "ghcr.io/contoso/worker:1.4"),
          ],
          volumes: [
            { name: "data", emptyDir: {} },
            {
              name: "kube-api-access-x7k2p",
              projected: {
                defaultMode: 420,
                sources: [
                  { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
                  { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
                ],
              },
            },
          ],
          restartPolicy: "Always",
          terminationGracePeriodSeconds: 30,
          dnsPolicy: "ClusterFirst",
          securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
          schedulerName: "default-scheduler",
          enableServiceLinks: true,
          preemptionPolicy: "PreemptLowerPriority",
          priority: 0,
        },
      },
      oldObject: null,
      dryRun: false,
      options: { apiVersion: "meta.k8s.io/v1", kind: "CreateOptions" },
    },
  });
}
