import { execFile, spawn, spawnSync } from "node:child_process";
import { readlinkSync } from "node:fs";

/**
 * Callers off loopback (not a test file). A caller off loopback needs a non-loopback address on this
 * machine, and test traffic may only go to loopback or into network namespaces a test makes itself: so the
 * sidecar runs in a user + network namespace of its own (unshare -rn, no root needed) whose loopback
 * device also carries OUTSIDE (a documentation address), and the calls are made from inside it (nsenter).
 */
export const OUTSIDE = "198.51.100.1";
/** The sidecar's port in its namespace: a fresh namespace, where nothing else listens. */
export const PORT = 5000;
const CLI = new URL("../../../src/cli.ts", import.meta.url).pathname;

/** Why such a namespace cannot be made here, or undefined when it can. */
export const netnsProblem = (() => {
  const tried = spawnSync("unshare", ["-rn", "ip", "addr", "add", `${OUTSIDE}/32`, "dev", "lo"], {
    encoding: "utf8",
  });
  if (tried.error) return `unshare or ip is not installed (${tried.error.message})`;
  if (tried.status !== 0) return `unshare -rn ... ip addr add failed: ${tried.stderr.trim()}`;
  const nsenter = spawnSync("nsenter", ["--version"], { encoding: "utf8" });
  return nsenter.error ? `nsenter is not installed (${nsenter.error.message})` : undefined;
})();

/** For a test's name: why it is skipped, or nothing. */
export const netnsSkipped = netnsProblem
  ? ` (skipped: ${netnsProblem}; unprivileged user namespaces are needed)`
  : "";

/** Starts a sidecar in a namespace of its own, makes the calls from inside it, answers [status, body] each. */
export async function fromOutside(
  sidecarEnv: Record<string, string>,
  calls: { from: string; host: string; path: string }[],
): Promise<{ answers: [number, string][]; output: string }> {
  const env: Record<string, string> = { ASPNETCORE_URLS: `http://+:${PORT}`, ...sidecarEnv };
  const child = spawn(
    "unshare",
    [
      "-rn",
      "sh",
      "-c",
      `ip link set lo up && ip addr add ${OUTSIDE}/32 dev lo && exec "$@"`,
      "sh",
      process.execPath,
      CLI,
      "sidecar",
    ],
    { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const output: string[] = [];
  child.stdout?.on("data", (d: Buffer) => output.push(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output.push(d.toString()));
  const exited = new Promise((r) => child.on("exit", r));
  const script = `
    const http = require("node:http");
    const get = (from, host, path) => new Promise((resolve, reject) => {
      const req = http.get({ host: from, localAddress: from, port: ${PORT}, path, headers: { host } }, (res) => {
        let body = ""; res.on("data", (d) => (body += d));
        res.on("end", () => resolve([res.statusCode, body]));
      });
      req.on("error", reject);
    });
    (async () => {
      for (let i = 0; ; i++) {
        try { await get("127.0.0.1", "localhost", "/healthz"); break; }
        catch (e) { if (i > 400) throw e; await new Promise((r) => setTimeout(r, 50)); }
      }
      const out = [];
      for (const c of ${JSON.stringify(calls)}) out.push(await get(c.from, c.host, c.path));
      console.log(JSON.stringify(out));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  try {
    // nsenter must join the sidecar's own namespace, not ours: wait until unshare has made it (before
    // that, the child's namespace is this one, where something else may listen on the port).
    const own = readlinkSync("/proc/self/ns/net");
    for (let i = 0; readlinkSync(`/proc/${child.pid}/ns/net`) === own; i++) {
      if (i > 500)
        throw new Error(`the sidecar did not enter a network namespace of its own\n${output.join("")}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        "nsenter",
        ["--preserve-credentials", "-U", "-n", "-t", String(child.pid), process.execPath, "-e", script],
        { timeout: 30_000 },
        (error, out, err) =>
          error ? reject(new Error(`${error.message}\n${err}\n${output.join("")}`)) : resolve(out),
      ),
    );
    return { answers: JSON.parse(stdout) as [number, string][], output: output.join("") };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}
