import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify } from "jose";
import { Agent, fetch } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { IDS, postForm } from "../support/emulator/testing.ts";

/** `agentid emulator` as a real process: start-up output, tokens, clean shutdown, state kept across restarts. */
const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

interface Started {
  child: ChildProcess;
  url: string;
  caPath: string;
  stderr: () => string;
}

async function startCli(args: string[]): Promise<Started> {
  const child = spawn(process.execPath, ["src/cli.ts", "emulator", "--log-level", "warn", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const started = await new Promise<{ url: string; caPath: string }>((resolve, reject) => {
    const check = () => {
      const url = /listening on (https:\/\/\S+)/.exec(err)?.[1];
      const caPath = /CA certificate: (\S+)/.exec(err)?.[1];
      if (url && caPath) resolve({ url, caPath });
    };
    child.stderr?.on("data", check);
    child.once("exit", (code) => reject(new Error(`emulator exited with ${code}: ${err}`)));
  });
  return { child, ...started, stderr: () => err };
}

async function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["src/cli.ts", "emulator", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = await once(child, "exit");
  return { code: code as number | null, stderr };
}

describe("agentid emulator", () => {
  it("serves the sample directory, stops on SIGTERM and keeps its CA and keys across restarts", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "agentid-emu-cli-"));
    const args = ["--port", "0", "--directory", "examples/directory.yaml", "--state-dir", stateDir];
    const first = await startCli(args);
    expect(first.caPath).toBe(join(stateDir, "ca.pem"));
    const caPem = await readFile(first.caPath, "utf8");
    const dispatcher = new Agent({ connect: { ca: caPem } });
    try {
      const r = await postForm(dispatcher, `${first.url}/${IDS.tenant}/oauth2/v2.0/token`, {
        grant_type: "client_credentials",
        client_id: IDS.blueprint,
        client_secret: IDS.blueprintSecret,
        scope: "api://AzureADTokenExchange/.default",
        fmi_path: IDS.agent,
      });
      expect(r.status).toBe(200);
      const token = String(r.json.access_token);

      first.child.kill("SIGTERM");
      const [code] = await once(first.child, "exit");
      expect(code).toBe(0);
      expect(first.stderr()).toContain("SIGTERM, shutting down");

      const second = await startCli(args);
      expect(await readFile(second.caPath, "utf8")).toBe(caPem);
      const jwks = await fetch(`${second.url}/${IDS.tenant}/discovery/v2.0/keys`, { dispatcher });
      const { payload } = await jwtVerify(token, createLocalJWKSet((await jwks.json()) as never));
      expect(payload.azp).toBe(IDS.blueprint);
      second.child.kill("SIGINT");
      expect((await once(second.child, "exit"))[0]).toBe(0);
    } finally {
      await dispatcher.close();
    }
  });

  it("exits 2 with one line on a bad flag or a bad directory file", async () => {
    const flag = await run(["--port", "99999"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr.trim().split("\n")).toHaveLength(1);
    const dir = await mkdtemp(join(tmpdir(), "agentid-emu-cli-"));
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "tenants:\n  - id: not-a-guid\n");
    const file = await run(["--port", "0", "--directory", bad, "--state-dir", dir]);
    expect(file.code).toBe(2);
    expect(file.stderr).toContain("tenants[0].id: must be a GUID");
    expect(file.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("documents every option in --help", async () => {
    const child = spawn(process.execPath, ["src/cli.ts", "emulator", "--help"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    expect((await once(child, "exit"))[0]).toBe(0);
    for (const option of [
      "--port",
      "--host",
      "--public-host",
      "--directory",
      "--state-dir",
      "--trust-ca",
      "--fic-propagation-seconds",
      "--log-level",
    ]) {
      expect(out).toContain(option);
    }
  });
});
