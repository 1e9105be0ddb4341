import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Real servers and processes: give slow 2-core machines room, and never share module state between files.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
    // The slowest files at the end of every run: `npm test` must stay under 10 minutes warm on 2 cores.
    reporters: ["default", "./test/support/slowest-files-reporter.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          // Unit tests live under test/<module>/ (README, "Contributing"); none beside the code in src/.
          include: ["test/**/*.test.ts"],
          exclude: ["test/integration/**", "test/e2e/**", "**/node_modules/**"],
        },
      },
      {
        // Runs against ONE real kube-apiserver + etcd, started only when this project has files in the run.
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/support/controlplane-global-setup.ts"],
          // Files mostly wait on the API server: two at a time, each in namespaces of its own (files that
          // restart a server start a control plane of their own, so they never disturb the shared one).
          maxWorkers: 2,
          // After the unit project (vitest runs projects of one group order together, and they must then
          // share one maxWorkers): a project added after this one takes the next number.
          sequence: { groupOrder: 1 },
          // expect.poll waits for a real API server and real processes: 30 s, not vitest's 1 s.
          expect: { poll: { timeout: 30_000, interval: 100 } },
        },
      },
      {
        // Real pods on ONE local single-node cluster (kubelet + containerd in a network namespace of its own),
        // from images built from the Dockerfile. Needs root on Linux; elsewhere its setup prints one line
        // saying so and the scenarios are skipped. `npm run e2e:kind` runs the same files on kind.
        extends: true,
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: [
            process.env.AGENTID_E2E_KIND === "1" ? "test/e2e/kind-setup.ts" : "test/e2e/global-setup.ts",
          ],
          testTimeout: 240_000,
        },
      },
    ],
  },
});
