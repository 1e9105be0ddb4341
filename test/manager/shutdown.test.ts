import { describe, expect, it } from "vitest";
import { shutdownPending } from "../../src/manager/command.ts";

describe("the line a shutdown that ran out of time logs", () => {
  it("names the manager's own steps still running", () => {
    expect(shutdownPending(["stopping operator", "closing the API client"], ["Timeout", "TCPWRAP"])).toBe(
      "stopping operator; closing the API client",
    );
  });

  it("names the kinds of handles still open when no step is left", () => {
    expect(shutdownPending([], ["Timeout", "TCPSocketWrap", "Timeout"])).toBe(
      "nothing the manager tracks; open handles: 2 Timeout, TCPSocketWrap",
    );
    expect(shutdownPending([], [])).toBe("nothing the manager tracks; open handles: none");
  });
});
