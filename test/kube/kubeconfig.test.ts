import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { createKubeClient } from "../../src/kube/client.ts";
import {
  type KubeConfigLike,
  KubeconfigError,
  loadInClusterConfig,
  loadKubeConfig,
  loadKubeconfigFile,
  tokenFileSource,
} from "../../src/kube/kubeconfig.ts";
import { createCertificateAuthority, issueCertificate } from "../../src/lib/pki.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** A real HTTPS server asking for client certificates; it answers with what it saw of the caller. */
interface Seen {
  authorization?: string;
  clientCn?: string;
}

let dir = "";
let server: Server;
let url = "";
let caPem = "";
let client: { certPem: string; keyPem: string };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kubeconfig-test-"));
  const ca = await createCertificateAuthority("kubeconfig-test-ca");
  caPem = ca.certPem;
  const serving = await issueCertificate(ca, {
    commonName: "localhost",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  client = await issueCertificate(ca, { commonName: "agentid-manager", usage: "client" });
  server = createServer(
    {
      key: serving.keyPem,
      cert: serving.certPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const socket = req.socket as TLSSocket;
      const peer = socket.authorized ? socket.getPeerCertificate() : undefined;
      const seen: Seen = {
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        ...(peer?.subject?.CN ? { clientCn: String(peer.subject.CN) } : {}),
      };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(seen));
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function seenBy(kc: KubeConfigLike): Promise<Seen> {
  const kube = createKubeClient(kc);
  try {
    return await kube.get<Seen>("/version");
  } finally {
    await kube.close();
  }
}

function kubeconfig(
  name: string,
  user: Record<string, unknown>,
  cluster: Record<string, unknown> = {},
): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "c", cluster: { server: url, "certificate-authority-data": b64(caPem), ...cluster } },
      ],
      users: [{ name: "u", user }],
      contexts: [{ name: "ctx", context: { cluster: "c", user: "u", namespace: "team-a" } }],
      "current-context": "ctx",
    }),
  );
  return path;
}

describe("kubeconfig files (through @kubernetes/client-node)", () => {
  it("uses inline client certificate data and CA data (mutual TLS against a real server)", async () => {
    const kc = await loadKubeconfigFile(
      kubeconfig("inline.yaml", {
        "client-certificate-data": b64(client.certPem),
        "client-key-data": b64(client.keyPem),
      }),
    );
    expect(kc.namespace).toBe("team-a");
    expect(await seenBy(kc)).toEqual({ clientCn: "agentid-manager" });
  });

  it("reads certificate, key and CA files relative to the kubeconfig, plus a token", async () => {
    writeFileSync(join(dir, "client.crt"), client.certPem);
    writeFileSync(join(dir, "client.key"), client.keyPem);
    writeFileSync(join(dir, "ca.crt"), caPem);
    const path = kubeconfig(
      "files.yaml",
      { "client-certificate": "client.crt", "client-key": "client.key", token: "abc.def" },
      { "certificate-authority-data": undefined, "certificate-authority": "ca.crt" },
    );
    expect(await seenBy(await loadKubeconfigFile(path))).toEqual({
      clientCn: "agentid-manager",
      authorization: "Bearer abc.def",
    });
  });

  it("refuses a server whose CA it was not given", async () => {
    const kc = await loadKubeconfigFile(
      kubeconfig("noca.yaml", { token: "t" }, { "certificate-authority-data": undefined }),
    );
    await expect(seenBy(kc)).rejects.toThrow(/certificate/i);
  });

  it("runs an exec credential plugin once and caches its token until it expires", async () => {
    const log = join(dir, "exec.log");
    const plugin = join(dir, "plugin.sh");
    writeFileSync(
      plugin,
      [
        "#!/bin/sh",
        `echo "$KUBERNETES_EXEC_INFO $GREETING" >> "${log}"`,
        `echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token","expirationTimestamp":"2999-01-01T00:00:00Z"}}'`,
      ].join("\n"),
    );
    chmodSync(plugin, 0o755);
    const kc = await loadKubeconfigFile(
      kubeconfig("exec.yaml", {
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: plugin,
          env: [{ name: "GREETING", value: "hi" }],
        },
      }),
    );
    expect(await seenBy(kc)).toEqual({ authorization: "Bearer exec-token" });
    expect(await seenBy(kc)).toEqual({ authorization: "Bearer exec-token" });
    const runs = readFileSync(log, "utf8").trim().split("\n");
    expect(runs).toHaveLength(1);
    expect(runs[0]).toContain("hi"); // the plugin's env from the kubeconfig
  });

  it("merges several files: the first file's context, users and clusters from the others", async () => {
    const first = join(dir, "first.yaml");
    writeFileSync(
      first,
      stringify({
        "current-context": "ctx",
        contexts: [{ name: "ctx", context: { cluster: "c", user: "u", namespace: "from-first" } }],
      }),
    );
    const second = join(dir, "second.yaml");
    writeFileSync(
      second,
      stringify({
        clusters: [{ name: "c", cluster: { server: url, "certificate-authority-data": b64(caPem) } }],
        users: [{ name: "u", user: { token: "second" } }],
      }),
    );
    const kc = await loadKubeconfigFile([first, join(dir, "missing.yaml"), second].join(delimiter));
    expect(kc.namespace).toBe("from-first");
    expect(await seenBy(kc)).toEqual({ authorization: "Bearer second" });
  });

  it("names the file and what is missing or malformed", async () => {
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    await expect(loadKubeconfigFile(write("yaml.yaml", "a: [b"))).rejects.toThrow(/yaml\.yaml/);
    await expect(
      loadKubeconfigFile(write("ctx.yaml", stringify({ "current-context": "nope", contexts: [] }))),
    ).rejects.toThrow(/no current context/);
    await expect(
      loadKubeconfigFile(
        write(
          "cl.yaml",
          stringify({
            "current-context": "x",
            contexts: [{ name: "x", context: { cluster: "gone", user: "u" } }],
          }),
        ),
      ),
    ).rejects.toThrow(/names no known cluster/);
    await expect(loadKubeconfigFile(kubeconfig("url.yaml", {}, { server: "not a url" }))).rejects.toThrow(
      /is not a URL/,
    );
    await expect(loadKubeconfigFile(join(dir, "absent.yaml"))).rejects.toThrow(KubeconfigError);
    await expect(loadKubeconfigFile(join(dir, "absent.yaml"))).rejects.toThrow(/absent\.yaml/);
  });
});

describe("in-cluster configuration", () => {
  function serviceAccountDir(token: string): string {
    const sa = mkdtempSync(join(dir, "sa-"));
    writeFileSync(join(sa, "token"), token);
    writeFileSync(join(sa, "ca.crt"), caPem);
    writeFileSync(join(sa, "namespace"), "agentid-system");
    return sa;
  }

  it("uses the ServiceAccount token and CA and the service host and port", async () => {
    const sa = serviceAccountDir("sa-token-1");
    const port = new URL(url).port;
    const kc = loadInClusterConfig(
      { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port },
      sa,
    );
    expect(kc.namespace).toBe("agentid-system");
    expect(kc.getCurrentCluster()?.server).toBe(url);
    expect(await seenBy(kc)).toEqual({ authorization: "Bearer sa-token-1" });
    expect(
      loadInClusterConfig(
        { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" },
        sa,
      ).getCurrentCluster()?.server,
    ).toBe("https://[fd00::1]:443");
  });

  it("is what loadKubeConfig picks in a pod, and says so when there is no configuration at all", async () => {
    const sa = serviceAccountDir("sa-token-2");
    const env = { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: new URL(url).port };
    expect(await seenBy(await loadKubeConfig({ env, inClusterDir: sa }))).toEqual({
      authorization: "Bearer sa-token-2",
    });
    await expect(loadKubeConfig({ env: {}, home: join(dir, "nohome") })).rejects.toThrow(
      /no Kubernetes configuration/,
    );
    expect(() => loadInClusterConfig(env, join(dir, "nosa"))).toThrow(/no ServiceAccount token/);
  });

  it("re-reads the token file once it is older than a minute (the kubelet rotates it)", async () => {
    const sa = serviceAccountDir("first");
    let now = 1_000_000;
    const source = tokenFileSource(join(sa, "token"), { now: () => now });
    expect(await source()).toBe("first");
    writeFileSync(join(sa, "token"), "second");
    now += 30_000;
    expect(await source()).toBe("first");
    now += 31_000;
    expect(await source()).toBe("second");
    writeFileSync(join(sa, "token"), "");
    now += 61_000;
    await expect(source()).rejects.toThrow(/is empty/);
  });
});
