import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import type { TestProject } from "vitest/node";
import { createKubeClient } from "../../src/kube/client.ts";
import { AGENT, BLUEPRINT, emulatorDirectory, SECOND_AGENT, TENANT } from "./global-setup.ts";
import { EMULATOR_CA_CONFIGMAP } from "./support/pods.ts";
import type { E2eTarget } from "./support/target.ts";

/**
 * `npm run e2e:kind`: the same scenarios on a kind cluster, where Docker and kind exist. Builds both targets of
 * the Dockerfile with `docker build`, loads them into kind, and runs the emulator as a pod from the manager
 * image. Written for machines with Docker; it cannot run on the project's machines and has not been run there.
 */

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLUSTER = "agentid-e2e";
const NS = "agentid-e2e-system";
const EMULATOR_HOST = `agentid-emulator.${NS}.svc`;
/** kind's service-account issuer. */
const KIND_ISSUER = "https://kubernetes.default.svc.cluster.local";

async function has(command: string): Promise<boolean> {
  return run("sh", ["-c", `command -v ${command}`]).then(
    () => true,
    () => false,
  );
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  for (const tool of ["docker", "kind"]) {
    if (!(await has(tool))) {
      const message = `npm run e2e:kind needs ${tool} on PATH; on the project's machines run \`npm run e2e\` (the local cluster) instead`;
      console.log(`e2e: skipped: ${message}`);
      project.provide("agentidE2e", { unavailable: message });
      return undefined;
    }
  }
  const dir = await mkdtemp(join(tmpdir(), "agentid-kind-"));
  await run("kind", ["create", "cluster", "--name", CLUSTER, "--wait", "180s"]);
  const stop = async () => {
    await run("kind", ["delete", "cluster", "--name", CLUSTER]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const images = {
      sidecar: "localhost/agentid/sidecar:e2e",
      manager: "localhost/agentid/manager:e2e",
      sidecarTrustingEmulator: "localhost/agentid/sidecar-trusting:e2e",
    };
    for (const [target, name] of Object.entries({ sidecar: images.sidecar, manager: images.manager })) {
      await run("docker", ["build", "--target", target, "--tag", name, ROOT], { maxBuffer: 64 << 20 });
      await run("kind", ["load", "docker-image", "--name", CLUSTER, name]);
    }
    const kubeconfigPath = join(dir, "kubeconfig");
    await writeFile(kubeconfigPath, (await run("kind", ["get", "kubeconfig", "--name", CLUSTER])).stdout);
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);

    // The emulator's CA and serving certificate for its Service name, made here by a short run, then handed to
    // the pod in a Secret so that this process knows the CA the sidecar must trust.
    const state = join(dir, "emulator-state");
    const warmup = spawn(
      process.execPath,
      [
        join(ROOT, "bin/agentid.js"),
        "emulator",
        "--port",
        "0",
        "--public-host",
        EMULATOR_HOST,
        "--state-dir",
        state,
      ],
      {
        stdio: "ignore",
      },
    );
    for (let i = 0; i < 100 && !(await readFile(join(state, "ca.pem"), "utf8").catch(() => "")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    warmup.kill("SIGTERM");
    await new Promise((resolve) => warmup.on("exit", resolve));
    const caPem = await readFile(join(state, "ca.pem"), "utf8");
    // The sidecar image with the emulator's CA, for the webhook to inject (as global-setup.ts does with buildah).
    const trusting = join(dir, "trusting");
    await mkdir(trusting);
    await writeFile(join(trusting, "ca.pem"), caPem);
    await writeFile(
      join(trusting, "Dockerfile"),
      `FROM ${images.sidecar}\nCOPY ca.pem /etc/agentid/extra-ca.pem\nENV NODE_EXTRA_CA_CERTS=/etc/agentid/extra-ca.pem\n`,
    );
    await run("docker", ["build", "--tag", images.sidecarTrustingEmulator, trusting]);
    await run("kind", ["load", "docker-image", "--name", CLUSTER, images.sidecarTrustingEmulator]);
    const client = createKubeClient(kc);
    try {
      const apply = (path: string, body: unknown) => client.create(path, body);
      await apply("/api/v1/namespaces", { metadata: { name: NS } });
      // The emulator fetches the issuer's keys without credentials.
      await apply("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        metadata: { name: "agentid-e2e:issuer-discovery" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "system:service-account-issuer-discovery",
        },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:unauthenticated" }],
      });
      const stateFiles: Record<string, string> = {};
      for (const file of await readdir(state)) {
        stateFiles[file] = Buffer.from(await readFile(join(state, file))).toString("base64");
      }
      await apply(`/api/v1/namespaces/${NS}/secrets`, {
        metadata: { name: "agentid-emulator-state" },
        data: stateFiles,
      });
      await apply(`/api/v1/namespaces/${NS}/configmaps`, {
        metadata: { name: "agentid-emulator-directory" },
        data: { "directory.json": emulatorDirectory(KIND_ISSUER) },
      });
      await apply(`/apis/apps/v1/namespaces/${NS}/deployments`, {
        metadata: { name: "agentid-emulator" },
        spec: {
          selector: { matchLabels: { app: "agentid-emulator" } },
          template: {
            metadata: { labels: { app: "agentid-emulator" } },
            spec: {
              containers: [
                {
                  name: "emulator",
                  image: images.manager,
                  imagePullPolicy: "IfNotPresent",
                  args: [
                    "emulator",
                    "--host",
                    "0.0.0.0",
                    "--public-host",
                    EMULATOR_HOST,
                    "--port",
                    "9443",
                    "--directory",
                    "/directory/directory.json",
                    "--state-dir",
                    "/state",
                    "--trust-ca",
                    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                  ],
                  volumeMounts: [
                    { name: "directory", mountPath: "/directory" },
                    { name: "state", mountPath: "/state" },
                  ],
                  readinessProbe: { tcpSocket: { port: 9443 }, periodSeconds: 1 },
                },
              ],
              volumes: [
                { name: "directory", configMap: { name: "agentid-emulator-directory" } },
                { name: "state", secret: { secretName: "agentid-emulator-state" } },
              ],
            },
          },
        },
      });
      await apply(`/api/v1/namespaces/${NS}/services`, {
        metadata: { name: "agentid-emulator" },
        spec: { selector: { app: "agentid-emulator" }, ports: [{ port: 9443, targetPort: 9443 }] },
      });
      // Every agent pod, injected or written by hand, must pass Pod Security `restricted`.
      await apply("/api/v1/namespaces", {
        metadata: { name: "e2e-agents", labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
      });
      await apply("/api/v1/namespaces/e2e-agents/serviceaccounts", { metadata: { name: "research-agent" } });
      await apply("/api/v1/namespaces/e2e-agents/configmaps", {
        metadata: { name: EMULATOR_CA_CONFIGMAP },
        data: { "ca.pem": caPem },
      });
      await run("kubectl", [
        "--kubeconfig",
        kubeconfigPath,
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/agentid-emulator",
        "--timeout=180s",
      ]);
    } finally {
      await client.close();
    }
    const target: E2eTarget = {
      cluster: "kind",
      kubeconfigPath,
      images,
      emulator: {
        instance: `https://${EMULATOR_HOST}:9443/`,
        caPem,
        tenantId: TENANT,
        blueprintAppId: BLUEPRINT,
        agentAppId: AGENT,
        secondAgentAppId: SECOND_AGENT,
      },
      agentNamespace: "e2e-agents",
      agentServiceAccount: "research-agent",
    };
    project.provide("agentidE2e", { target });
  } catch (error) {
    await stop();
    throw error;
  }
  return stop;
}
