import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { managerCommand } from "../../src/manager/command.ts";

/**
 * The kubelet gives every container environment variables for each Service of its namespace
 * (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT…`, `<NAME>_PORT`, `<NAME>_PORT_<port>_<proto>…`). One of them
 * named like a manager option's variable overrides the option: `AGENTID_WEBHOOK_PORT=tcp://10.0.0.1:443`
 * made the manager exit in its pod (found by test/e2e/manager-webhook.test.ts).
 */
const templates = new URL("../../charts/agentid/templates/", import.meta.url);

function chartServiceNames(): string[] {
  const names: string[] = [];
  for (const file of readdirSync(templates)) {
    const text = readFileSync(new URL(file, templates), "utf8");
    for (const doc of text.split(/^---$/m)) {
      if (!/^kind: Service$/m.test(doc)) continue;
      const name = /^metadata:\n(?:\s+.*\n)*?\s+name: ([a-z0-9-]+)/m.exec(doc)?.[1];
      if (name) names.push(name);
    }
  }
  return names;
}

function collides(variable: string, service: string): boolean {
  const prefix = service.toUpperCase().replaceAll("-", "_");
  return (
    variable === `${prefix}_PORT` ||
    variable.startsWith(`${prefix}_PORT_`) ||
    variable.startsWith(`${prefix}_SERVICE_`)
  );
}

describe("the manager's environment variables", () => {
  it("reads the chart's Services (so the check below checks something)", () => {
    expect(chartServiceNames()).toContain("agentid-webhook");
  });

  it("never share a name with a service link the kubelet sets for the chart's Services", () => {
    const variables = Object.values(managerCommand.options).flatMap((o) => (o.env ? [o.env] : []));
    expect(variables.length).toBeGreaterThan(5);
    expect(collides("AGENTID_WEBHOOK_PORT", "agentid-webhook")).toBe(true);
    const clashes = chartServiceNames().flatMap((service) =>
      variables.filter((v) => collides(v, service)).map((v) => `${v} (Service ${service})`),
    );
    expect(clashes).toEqual([]);
  });
});
