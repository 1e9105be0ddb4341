import { createHash } from "node:crypto";
import { authorityHostOf } from "../api/cloud.ts";
import { TOKEN_AUDIENCE } from "../api/constants.ts";
import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  credentialKind,
  type FederatedCredentialStatus,
} from "../api/types.ts";

/** The federated identity credential a blueprint needs so that one ServiceAccount's tokens are accepted. */
export interface FederatedCredential {
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

export function serviceAccountSubject(namespace: string, serviceAccount: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccount}`;
}

function shortHash(text: string, length: number): string {
  return createHash("sha256").update(text).digest("hex").slice(0, length);
}

/**
 * Graph credential names are immutable, unique per application, at most 120 characters and URL friendly.
 * The name is derived from issuer and subject only, so every replica and every cluster computes the same
 * one, two clusters sharing a blueprint never collide, a changed issuer gives a new credential, and a
 * finalizer can recompute it instead of trusting what status says.
 */
export function federatedCredentialName(issuer: string, subject: string): string {
  const readable = subject
    .replace(/^system:serviceaccount:/, "")
    .replace(/[^A-Za-z0-9-]+/g, "-")
    .slice(0, 90);
  return `agentid-${readable}-${shortHash(`${issuer}\n${subject}`, 12)}`;
}

export function desiredFederatedCredential(
  namespace: string,
  serviceAccount: string,
  issuer: string,
): FederatedCredential {
  const subject = serviceAccountSubject(namespace, serviceAccount);
  return { name: federatedCredentialName(issuer, subject), issuer, subject, audiences: [TOKEN_AUDIENCE] };
}

/** Single-quotes a value for a POSIX shell. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

/** The Azure CLI command that adds the credential to the blueprint, ready to paste. */
export function azCommand(blueprintClientId: string, credential: FederatedCredential): string {
  const parameters = JSON.stringify({
    name: credential.name,
    issuer: credential.issuer,
    subject: credential.subject,
    audiences: credential.audiences,
  });
  return `az ad app federated-credential create --id ${blueprintClientId} --parameters ${shellQuote(parameters)}`;
}

export function federatedCredentialStatus(
  blueprintClientId: string,
  credential: FederatedCredential,
): FederatedCredentialStatus {
  return {
    ...credential,
    audiences: [...credential.audiences],
    azCommand: azCommand(blueprintClientId, credential),
  };
}

/** Whether a credential that exists in Entra already does what the desired one does (names may differ). */
export function sameTrust(
  a: Omit<FederatedCredential, "name">,
  b: Omit<FederatedCredential, "name">,
): boolean {
  return (
    a.issuer === b.issuer &&
    a.subject === b.subject &&
    a.audiences.length === b.audiences.length &&
    a.audiences.every((aud) => b.audiences.includes(aud))
  );
}

/**
 * Everything a verification depends on: both generations (any spec change re-verifies) and what comes
 * from elsewhere (issuer, the created agent). A change re-verifies at once; otherwise only periodically.
 */
export function verificationFingerprint(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  agentClientId: string,
  issuer: string | undefined,
): string {
  const secretRef = identity.spec.clientSecretRef;
  return shortHash(
    JSON.stringify([
      identity.metadata.generation ?? 0,
      blueprint.metadata.generation ?? 0,
      blueprint.spec.tenantId.toLowerCase(),
      authorityHostOf(blueprint),
      blueprint.spec.clientId.toLowerCase(),
      agentClientId.toLowerCase(),
      credentialKind(identity, blueprint),
      secretRef ? `${secretRef.name}/${secretRef.key}` : "",
      issuer ?? "",
      serviceAccountSubject(identity.metadata.namespace, identity.spec.serviceAccountName),
    ]),
    16,
  );
}
