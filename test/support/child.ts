import { type ChildProcess, spawn } from "node:child_process";
import { onTestFinished } from "vitest";

/** A spawned process a test watches: its exit code and what it has written so far. */
export interface WatchedChild {
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** stdout as JSON lines (pino's format), parsed. */
  jsonLines<T>(): T[];
}

/**
 * Collects a spawned process's output and exit code, and kills it when the test finishes, also when the
 * test times out: vitest then abandons the body, and a `finally` in it would only run once its pending
 * await ends, leaving the process running after the file.
 */
export function watchChild(child: ChildProcess): WatchedChild {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c) => {
    stdout += c;
  });
  child.stderr?.on("data", (c) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return {
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    jsonLines: <T>() =>
      stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as T),
  };
}

/**
 * `agentid manager` (bin/agentid.js) as a process of its own, watched as `watchChild` does, with its health
 * server on a loopback port of its own (test files run in parallel) and the given flags after it.
 */
export function spawnManager(flags: string[]): WatchedChild & { child: ChildProcess } {
  const cli = new URL("../../bin/agentid.js", import.meta.url).pathname;
  const child = spawn(
    process.execPath,
    [cli, "manager", "--health-host", "127.0.0.1", "--health-port", "0", ...flags],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  return { child, ...watchChild(child) };
}
