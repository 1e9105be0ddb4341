import type { FlatConfig } from "./flat.ts";

/**
 * The configuration keys this sidecar reads, as patterns over lower-cased `:`-separated keys. Any other
 * key under the sections it reads (`AzureAd`, `DownstreamApis`, `Sidecar`, `Kestrel`, `Logging`) is
 * one of Microsoft's that this sidecar does not act on (or a typo): it gets a start-up warning
 * naming it, so that nothing a migrating user configured is dropped without a word.
 */
const CREDENTIAL_KEYS = [
  "sourcetype",
  "skip",
  "clientsecret",
  "signedassertionfilediskpath",
  "signedassertionfilepath",
  "managedidentityclientid",
  "tokenexchangeurl",
  "certificatediskpath",
  "certificatepassword",
  "base64encodedvalue",
  "keyvaulturl",
  "keyvaultcertificatename",
  "keyvaultsecretname",
  "certificatestorepath",
  "certificatethumbprint",
  "certificatedistinguishedname",
];
const ACQUIRE_KEYS = [
  "tenant",
  "forcerefresh",
  "claims",
  "correlationid",
  "fmipath",
  "poppublickey",
  "popclaim",
  "longrunningwebapisessionkey",
  "managedidentity:userassignedclientid",
];
const API_KEYS = [
  "baseurl",
  "relativepath",
  "scopes",
  "scopes:\\d+",
  "httpmethod",
  "requestapptoken",
  "acceptheader",
  "contenttype",
  "protocolscheme",
  "extraheaderparameters:[^:]+",
  "extraqueryparameters:[^:]+",
  ...ACQUIRE_KEYS.map((k) => `acquiretokenoptions:${k}`),
];

const READ = new RegExp(
  `^(${[
    "azuread:(instance|tenantid|clientid|authority|audience|audiences:\\d+|scopes|clientsecret)",
    `azuread:clientcredentials:\\d+:(${CREDENTIAL_KEYS.join("|")})`,
    `downstreamapis:[^:]+:(${API_KEYS.join("|")})`,
    "sidecar:allowoverrides:(getauthorizationheader|getauthorizationheaderunauthenticated|calldownstreamapi|calldownstreamapiunauthenticated)",
    "sidecar:(allowoutboundredirects|agentidentity|allowblueprinttoken|allowfmipathoverride|allownonloopbackcallers)",
    "sidecar:longrunningobo:(maxsessions|idletimeoutseconds)",
    "kestrel:endpoints:[^:]+:url",
    "logging:loglevel:default",
    "allowedhosts",
  ].join("|")})$`,
);

const SECTIONS = ["azuread", "downstreamapis", "sidecar", "kestrel", "logging"];

/** The keys under the sidecar's sections that it does not read, as first written (pure). */
export function unreadKeys(flat: FlatConfig): string[] {
  const out: string[] = [];
  for (const [lower, { key }] of flat.entries) {
    const section = lower.split(":", 1)[0] ?? "";
    if (SECTIONS.includes(section) && !READ.test(lower)) out.push(key);
  }
  return out.sort();
}

export const UNREAD_DOC = 'docs/compatibility.md, "Configuration keys not read"';

export function unreadWarnings(flat: FlatConfig): string[] {
  return unreadKeys(flat).map(
    (key) => `${key} is not supported by this sidecar and is ignored (${UNREAD_DOC})`,
  );
}
