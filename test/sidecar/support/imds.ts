import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fetch as undiciFetch } from "undici";
import { type Emu, IDS } from "../harness.ts";

/**
 * A managed identity over the emulator (not a test file): an application of kind managedIdentity, whose
 * app tokens are what IMDS would hand out, and an IMDS stand-in on loopback that serves them. msal-node
 * finds it through AZURE_POD_IDENTITY_AUTHORITY_HOST, as on an AKS node with pod identity.
 */
export interface ManagedIdentity {
  /** An app token of the managed identity for `resource`, straight from the emulator. */
  token(resource: string): Promise<{ access_token: string; expires_in: number }>;
  /** Starts the IMDS stand-in and points AZURE_POD_IDENTITY_AUTHORITY_HOST at it until `close`. */
  serveImds(): Promise<Imds>;
}

export interface Imds {
  /** Every request, as `<url> metadata=<the Metadata header>`. */
  requests: string[];
  /** The resource of every request. */
  resources: string[];
  close(): void;
}

export async function createManagedIdentity(
  emu: Emu,
  appId: string,
  displayName: string,
  secret: string,
): Promise<ManagedIdentity> {
  await emu.admin("POST", `tenants/${IDS.tenant}/applications`, {
    appId,
    displayName,
    kind: "managedIdentity",
    clientSecrets: [{ value: secret }],
  });
  const token = async (resource: string) => {
    const body = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: appId,
      client_secret: secret,
      scope: `${resource}/.default`,
    });
    const response = await undiciFetch(`${emu.emulator.url}/${IDS.tenant}/oauth2/v2.0/token`, {
      method: "POST",
      body: body.toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
      dispatcher: emu.dispatcher,
    });
    return (await response.json()) as { access_token: string; expires_in: number };
  };
  return {
    token,
    async serveImds() {
      const requests: string[] = [];
      const resources: string[] = [];
      const server = createServer((req, res) => {
        const resource = new URL(req.url ?? "/", "http://imds").searchParams.get("resource") ?? "";
        requests.push(`${req.url} metadata=${req.headers.metadata}`);
        resources.push(resource);
        token(resource).then((t) => {
          res.setHeader("content-type", "application/json");
          res.end(
            JSON.stringify({
              access_token: t.access_token,
              expires_in: String(t.expires_in),
              expires_on: String(Math.floor(Date.now() / 1000) + t.expires_in),
              resource,
              token_type: "Bearer",
            }),
          );
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return {
        requests,
        resources,
        close() {
          delete process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST;
          server.close();
        },
      };
    },
  };
}
