import { type Command, parseCommandArgs, renderHelp, UsageError } from "./lib/command.ts";

/**
 * The `agentid` command. Each subcommand lives in its component's folder and is loaded only when
 * called, so that `agentid sidecar` does not pay for the operator's dependencies at start-up.
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  emulator: {
    summary: "Run a local Microsoft Entra (Agent ID) token service and Graph subset over HTTPS.",
    load: async () => (await import("./emulator/command.ts")).emulatorCommand,
  },
  manager: {
    summary: "Run the AgentIdentity operator (leader-elected; /healthz, /readyz, /metrics).",
    load: async () => (await import("./manager/command.ts")).managerCommand,
  },
  sidecar: {
    summary:
      "Run the token sidecar: Microsoft's Entra SDK auth sidecar API on loopback, with a bounded cache.",
    load: async () => (await import("./sidecar/command.ts")).sidecarCommand,
  },
};

function topLevelHelp(): string {
  const width = Math.max(0, ...Object.keys(COMMANDS).map((n) => n.length)) + 4;
  return [
    "Usage: agentid <command> [options]",
    "",
    "Gives AI-agent pods their own Microsoft Entra Agent ID, with no secret in the agent's code.",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    "",
    "Run 'agentid <command> --help' for the options of a command.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(topLevelHelp());
    return name === undefined ? 2 : 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(`agentid: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(", ")})`);
    return 2;
  }
  const command = await entry.load();
  try {
    const { help, values } = parseCommandArgs(command, rest);
    if (help) {
      console.log(renderHelp(command));
      return 0;
    }
    return (await command.run(values)) ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`agentid ${name}: ${error.message}`);
      return 2;
    }
    throw error;
  }
}

/** Runs the CLI and sets the process exit code; the one place that turns a crash into exit code 1. */
export function runCli(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`agentid: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    },
  );
}

if (import.meta.main) runCli(process.argv.slice(2));
