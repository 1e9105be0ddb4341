import { KubeConfig } from "@kubernetes/client-node";
import { createLeaderElector } from "../../src/kube/leader.ts";
import { createLogger } from "../../src/lib/log.ts";

/**
 * A separate process that campaigns for a Lease and prints "leading <identity>" when it wins, so a test
 * can kill it with SIGKILL: a leader that dies without releasing, as a crashed pod does.
 * Environment: KUBECONFIG_PATH, LEASE_NAMESPACE, LEASE_NAME, IDENTITY.
 */
const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(env("KUBECONFIG_PATH"));
const identity = env("IDENTITY");
const elector = createLeaderElector({
  kubeConfig,
  namespace: env("LEASE_NAMESPACE"),
  name: env("LEASE_NAME"),
  identity,
  leaseDurationSeconds: 8,
  renewDeadlineSeconds: 5,
  retryPeriodSeconds: 0.5,
  logger: createLogger({ name: "leader-child", level: "silent" }),
});
elector.run({
  onStartedLeading: () => {
    process.stdout.write(`leading ${identity}\n`);
  },
  onStoppedLeading: () => {
    process.stdout.write(`stopped ${identity}\n`);
  },
});
