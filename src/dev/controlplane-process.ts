import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

/** A child process whose stdout and stderr go to a log file. */
export interface ManagedProcess {
  name: string;
  pid: number;
  logPath: string;
  /** Settles when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
  /** Synchronous last resort for process-exit hooks. */
  killNow(): void;
}

export function startProcess(name: string, binary: string, args: string[], logPath: string): ManagedProcess {
  const fd = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: ["ignore", fd, fd] });
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd);
  }
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("error", () => {
      done = true;
      resolve({ code: null, signal: null });
    });
    child.on("exit", (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${name} (${binary})`);
  return {
    name,
    pid,
    logPath,
    exited,
    hasExited: () => done,
    async stop(graceMs = 10_000) {
      if (done) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
    killNow() {
      if (!done) child.kill("SIGKILL");
    },
  };
}

/** The last `lines` lines of a log file, for error messages; never throws. */
export async function tailFile(path: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(path, "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch (error) {
    return `(cannot read ${path}: ${(error as Error).message})`;
  }
}

/**
 * `count` distinct free TCP ports on 127.0.0.1. All are held open until every one is chosen, so the
 * list has no duplicates; another process may still take one before our child binds it (rare; the
 * start-up error then names the log that says "address already in use").
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, async () => {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolve);
      });
      return server;
    }),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("unexpected server address");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** PIDs of running processes whose command line mentions `needle` (Linux /proc; empty elsewhere). */
export function pidsMentioning(needle: string): number[] {
  if (!existsSync("/proc")) return [];
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(join("/proc", entry, "cmdline"), "utf8");
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/**
 * Removes control planes left behind by test processes that were killed before their exit hooks ran:
 * a directory under `root` with `prefix` whose owner.json names a dead process. Only processes whose
 * command line mentions that directory are killed, so nothing else can be hit.
 */
export function reapStaleControlPlanes(root: string, prefix: string): string[] {
  const reaped: string[] = [];
  const ownerOf = (dir: string): { pid: number } | undefined => {
    try {
      const pid = (JSON.parse(readFileSync(join(dir, "owner.json"), "utf8")) as { pid?: unknown }).pid;
      return typeof pid === "number" ? { pid } : undefined;
    } catch {
      return undefined; // Being created right now, or not ours.
    }
  };
  for (const { dir } of ownedDirs(root, prefix, ownerOf, false)) {
    for (const child of pidsMentioning(dir)) {
      try {
        process.kill(child, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
      reaped.push(dir);
    } catch {
      // A leftover must never stop a new control plane from starting; the next start tries again.
    }
  }
  return reaped;
}

/** Reports each of `processes` that exits before `stopped()` says the owner stops it, with its log's last lines. */
export function reportUnexpectedExits(
  processes: ManagedProcess[],
  progress: (line: string) => void,
  stopped: () => boolean,
): void {
  for (const p of processes) {
    void p.exited.then(async ({ code, signal }) => {
      if (stopped()) return;
      progress(`${p.name} exited unexpectedly (${signal ?? `code ${code}`}); last lines of ${p.logPath}:`);
      progress(await tailFile(p.logPath, 25));
    });
  }
}

/** Waits for `what`: polls `probe` while `processes` run, until `deadline`. */
export type ProcessWait = <T>(
  what: string,
  deadline: number,
  processes: ManagedProcess[],
  probe: () => Promise<T | undefined>,
) => Promise<T>;

/**
 * A wait that polls its probe every `intervalMs` until it answers (anything but undefined), failing at once
 * when one of the processes exits and at the deadline; what the probe last threw (why not yet) goes into
 * the timeout's message. `fail` makes the error: the caller's class, and what it adds about an exited
 * process.
 */
export function waitWhileRunning(
  fail: (message: string, exited?: ManagedProcess) => Error | Promise<Error>,
  intervalMs: number,
): ProcessWait {
  return async (what, deadline, processes, probe) => {
    let last = "not tried yet";
    while (Date.now() < deadline) {
      const dead = processes.find((p) => p.hasExited());
      if (dead) throw await fail(`${dead.name} exited while waiting for ${what}`, dead);
      try {
        const value = await probe();
        if (value !== undefined) return value;
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
    throw await fail(`timed out waiting for ${what} (last: ${last})`);
  };
}

/** The directories under `root` named `prefix…`; none when `root` cannot be read. */
function dirsWithPrefix(root: string, prefix: string): string[] {
  try {
    return readdirSync(root)
      .filter((e) => e.startsWith(prefix))
      .map((e) => join(root, e));
  } catch {
    return [];
  }
}

/**
 * The directories under `root` named `prefix…` whose owner (read from the directory by `ownerOf`) is
 * alive, or with `alive` false, dead. One whose owner cannot be read (being created right now, or not
 * ours) is in neither list.
 */
export function ownedDirs<T extends { pid: number }>(
  root: string,
  prefix: string,
  ownerOf: (dir: string) => T | undefined,
  alive: boolean,
): Array<{ dir: string; owner: T }> {
  const found: Array<{ dir: string; owner: T }> = [];
  for (const dir of dirsWithPrefix(root, prefix)) {
    const owner = ownerOf(dir);
    if (owner && isAlive(owner.pid) === alive) found.push({ dir, owner });
  }
  return found;
}

type Cleanup = () => void;
const cleanups = new Set<Cleanup>();
let hooksInstalled = false;

function runCleanups(): void {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch {
      // Best effort while exiting.
    }
  }
  cleanups.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  runCleanups();
  // Keep the default behaviour (terminate) unless someone else also handles this signal.
  if (process.listenerCount(signal) === 1) {
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  }
}

/**
 * Registers a synchronous cleanup that runs when the process exits or is interrupted, so child processes
 * never outlive a test run that failed or was cancelled. Returns the function that unregisters it.
 */
export function onProcessExit(cleanup: Cleanup): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on("exit", runCleanups);
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);
  }
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}
