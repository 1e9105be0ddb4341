import { prepareCluster, startCluster } from "../src/dev/cluster.ts";
import { buildProjectImages } from "../src/dev/cluster-images.ts";
import { ClusterRequirementError } from "../src/dev/cluster-packages.ts";

/**
 * `npm run cluster`: starts the local single-node cluster and keeps it until Ctrl-C (prints the kubeconfig).
 * `npm run cluster -- --check`: starts it, prints the start-up phases, stops it (a smoke test).
 * `npm run cluster -- --prepare`: installs, builds and caches everything the cluster and the e2e tests need
 * (Debian packages, kubelet & co., the pause image, the sidecar and manager images), without starting it.
 */
async function main(argv: string[]): Promise<number> {
  const progress = (line: string) => process.stderr.write(`[cluster] ${line}\n`);
  try {
    if (argv.includes("--prepare")) {
      const started = Date.now();
      await prepareCluster({ progress });
      await buildProjectImages(["sidecar", "manager"], progress);
      console.log(`cluster prepared in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      return 0;
    }
    const cluster = await startCluster({ progress });
    console.log(`kubeconfig: ${cluster.kubeconfigPath}`);
    console.log(`start-up phases (ms): ${JSON.stringify(cluster.timings)}`);
    if (argv.includes("--check")) {
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
