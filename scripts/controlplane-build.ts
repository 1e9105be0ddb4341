import { formatElapsed } from "../src/dev/controlplane-binaries.ts";
import {
  ControlPlaneBuildError,
  ensureControlPlaneBinaries,
  FIRST_BUILD_HINT,
} from "../src/dev/controlplane-build.ts";
import { type Command, parseCommandArgs, renderHelp, stringOption, UsageError } from "../src/lib/command.ts";

/** `npm run controlplane:build`: builds kube-apiserver and etcd once into the cache, or finds them. */
export const controlPlaneBuildCommand: Command = {
  name: "controlplane:build",
  summary: "Build kube-apiserver and etcd for the local control plane (integration tests, playground).",
  description: [
    "Builds both binaries from the Go wrapper modules in tools/controlplane/ with the local Go toolchain",
    "(GOTOOLCHAIN=local, CGO_ENABLED=0) into ~/.cache/agentid/controlplane/<k8s-version>/, and skips the",
    `build when the cache already holds the right versions; ${FIRST_BUILD_HINT}.`,
    "When KUBEBUILDER_ASSETS (a directory with kube-apiserver and etcd) or TEST_ASSET_KUBE_APISERVER /",
    "TEST_ASSET_ETCD are set, those binaries are used and Go is not needed.",
  ].join("\n"),
  options: {
    "cache-dir": {
      type: "string",
      help:
        "Cache root; binaries go to <cache-dir>/<k8s-version>/ " +
        "(default: $XDG_CACHE_HOME/agentid/controlplane, else ~/.cache/agentid/controlplane)",
      env: "AGENTID_CONTROLPLANE_CACHE",
    },
    force: { type: "boolean", help: "Rebuild even when the cache holds the right versions.", default: false },
  },
  async run(values) {
    const started = Date.now();
    const cacheDir = stringOption(values, "cache-dir");
    const binaries = await ensureControlPlaneBinaries({
      force: values.force === true,
      ...(cacheDir ? { cacheDir } : {}),
    });
    console.log(`kube-apiserver: ${binaries.kubeApiserver} (${binaries.source.kubeApiserver})`);
    console.log(`etcd:           ${binaries.etcd} (${binaries.source.etcd})`);
    console.log(`done in ${formatElapsed(Date.now() - started)}`);
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  try {
    const { help, values } = parseCommandArgs(controlPlaneBuildCommand, argv);
    if (help) {
      console.log(
        renderHelp(controlPlaneBuildCommand).replace(
          "agentid controlplane:build",
          "npm run controlplane:build --",
        ),
      );
      return 0;
    }
    return (await controlPlaneBuildCommand.run(values)) ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`controlplane:build: ${error.message}`);
      return 2;
    }
    if (error instanceof ControlPlaneBuildError) {
      console.error(`controlplane:build: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
