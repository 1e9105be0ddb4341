import { startCluster } from "../src/dev/cluster.ts";
import { ClusterRequirementError } from "../src/dev/cluster-packages.ts";

/**
 * `npm run cluster` — starts the local single-node cluster and keeps it until Ctrl-C; prints the kubeconfig path.
 * `npm run cluster -- --check` starts it, prints the start-up phases and stops (a smoke test).
 */
async function main(argv: string[]): Promise<number> {
  const check = argv.includes("--check");
  try {
    const cluster = await startCluster();
    console.log(`kubeconfig: ${cluster.kubeconfigPath}`);
    console.log(`start-up phases (ms): ${JSON.stringify(cluster.timings)}`);
    if (check) {
      await cluster.stop();
      return 0;
    }
    console.log("Ctrl-C stops the cluster and removes everything it made.");
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await cluster.stop();
    return 0;
  } catch (error) {
    if (error instanceof ClusterRequirementError) {
      console.error(`cluster: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
