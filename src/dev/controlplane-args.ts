/**
 * Command lines for etcd and kube-apiserver. Pure, so the choices below are testable and explained in one place.
 */

export interface EtcdArgsInput {
  dataDir: string;
  clientPort: number;
  peerPort: number;
}

export function etcdArgs(input: EtcdArgsInput): string[] {
  const client = `http://127.0.0.1:${input.clientPort}`;
  const peer = `http://127.0.0.1:${input.peerPort}`;
  return [
    "--name=agentid",
    `--data-dir=${input.dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=agentid=${peer}`,
    // A throw-away store: durability buys nothing and fsync dominates start-up and write latency.
    "--unsafe-no-fsync=true",
    "--log-level=warn",
  ];
}

export interface KubeApiserverArgsInput {
  etcdUrl: string;
  port: number;
  /** Scratch directory kube-apiserver may write to (it never needs to: every certificate is given). */
  certDir: string;
  caFile: string;
  servingCertFile: string;
  servingKeyFile: string;
  serviceAccountPublicKeyFile: string;
  serviceAccountSigningKeyFile: string;
  /** `--name=value` pairs that replace or extend the defaults; an empty value removes a default. */
  extraArgs?: Record<string, string>;
}

/** The issuer the harness configures: https on loopback, no trailing slash (the `iss` claim matches it byte for byte). */
export function issuerUrlFor(port: number): string {
  return `https://127.0.0.1:${port}`;
}

export function kubeApiserverArgs(input: KubeApiserverArgsInput): string[] {
  const issuer = issuerUrlFor(input.port);
  const args: Record<string, string> = {
    "etcd-servers": input.etcdUrl,
    "bind-address": "127.0.0.1",
    "secure-port": String(input.port),
    // Loopback-only machines have no default route, and auto-detection would fail ("no default routes found");
    // a loopback advertise address is refused by the endpoint reconcilers, so switch them off: nothing here
    // needs the in-cluster `kubernetes` Service endpoints.
    "advertise-address": "127.0.0.1",
    "endpoint-reconciler-type": "none",
    "cert-dir": input.certDir,
    "tls-cert-file": input.servingCertFile,
    "tls-private-key-file": input.servingKeyFile,
    "client-ca-file": input.caFile,
    "authorization-mode": "RBAC",
    "service-cluster-ip-range": "10.0.0.0/24",
    "allow-privileged": "true",
    // Webhooks and PodSecurity are default-on; naming them makes the contract explicit.
    "enable-admission-plugins": "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,PodSecurity",
    // No controller-manager creates `default` ServiceAccounts, so this plugin would reject every pod.
    "disable-admission-plugins": "ServiceAccount",
    "service-account-issuer": issuer,
    "service-account-key-file": input.serviceAccountPublicKeyFile,
    "service-account-signing-key-file": input.serviceAccountSigningKeyFile,
    // Without it the discovery document's jwks_uri is built from the external address, which is not loopback.
    "service-account-jwks-uri": `${issuer}/openid/v1/jwks`,
    profiling: "false",
  };
  for (const [name, value] of Object.entries(input.extraArgs ?? {})) {
    if (value === "") delete args[name];
    else args[name] = value;
  }
  return Object.entries(args).map(([name, value]) => `--${name}=${value}`);
}
