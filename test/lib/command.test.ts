import { describe, expect, it } from "vitest";
import { type Command, parseCommandArgs, portOption, renderHelp, UsageError } from "../../src/lib/command.ts";

const command: Command = {
  name: "demo",
  summary: "A demo command",
  options: {
    port: { type: "string", help: "Port to listen on", default: "9443", env: "DEMO_PORT" },
    verbose: { type: "boolean", help: "Say more", env: "DEMO_VERBOSE" },
  },
  run: async () => 0,
};

describe("parseCommandArgs", () => {
  it("takes a flag over the environment over the default", () => {
    expect(parseCommandArgs(command, ["--port", "1"], { DEMO_PORT: "2" }).values.port).toBe("1");
    expect(parseCommandArgs(command, [], { DEMO_PORT: "2" }).values.port).toBe("2");
    expect(parseCommandArgs(command, [], {}).values.port).toBe("9443");
  });

  it("rejects unknown flags and positionals with a usage error naming the help", () => {
    expect(() => parseCommandArgs(command, ["--nope"], {})).toThrow(UsageError);
    expect(() => parseCommandArgs(command, ["--nope"], {})).toThrow(/agentid demo --help/);
    expect(() => parseCommandArgs(command, ["extra"], {})).toThrow(UsageError);
  });

  it("rejects a boolean environment variable that is not true or false", () => {
    expect(() => parseCommandArgs(command, [], { DEMO_VERBOSE: "yes" })).toThrow(
      /DEMO_VERBOSE must be true or false/,
    );
    expect(parseCommandArgs(command, [], { DEMO_VERBOSE: "TRUE" }).values.verbose).toBe(true);
  });

  it("validates ports", () => {
    expect(portOption({ port: "8080" }, "port")).toBe(8080);
    expect(() => portOption({ port: "70000" }, "port")).toThrow(/--port must be a port number/);
    expect(() => portOption({ port: "abc" }, "port")).toThrow(UsageError);
  });

  it("documents every option with its default and environment variable", () => {
    const help = renderHelp(command);
    expect(help).toContain("--port <value>");
    expect(help).toContain("default: 9443; env: DEMO_PORT");
    expect(help).toContain("--help");
  });
});
