import type { AcquireTokenOptions } from "../config/types.ts";
import {
  isGuid,
  isHeaderName,
  isHeaderValue,
  isMetaTenant,
  isReservedHeader,
  isTenant,
  parseBool,
  parseHttpMethod,
} from "../config/values.ts";
import type { AgentUser } from "../tokens/keys.ts";

/** `optionsOverride.*` from the query, parsed and checked. */
export interface Overrides {
  /** True when any override other than the always-ignored BaseUrl was given. */
  present: boolean;
  baseUrlIgnored: boolean;
  scopes?: string[];
  requestAppToken?: true;
  relativePath?: string;
  httpMethod?: string;
  acceptHeader?: string;
  contentType?: string;
  acquireTokenOptions: AcquireTokenOptions;
  extraHeaders: Record<string, string>;
  extraQuery: Record<string, string>;
}

export interface AgentParameters {
  agentIdentity?: string;
  user?: AgentUser;
}

export interface ParsedQuery {
  overrides: Overrides;
  agent: AgentParameters;
  /** Agent parameters were given at all (for the override gate). */
  agentGiven: boolean;
}

export type QueryValue = string | string[] | undefined;

const PREFIX = "optionsoverride.";
const UNSUPPORTED = new Set([
  "acquiretokenoptions.poppublickey",
  "acquiretokenoptions.popclaim",
  "acquiretokenoptions.managedidentity.userassignedclientid",
]);

function last(value: QueryValue): string | undefined {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

function all(value: QueryValue): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/**
 * Parses the query as Microsoft's binder does (case-insensitive keys, repeatable Scopes, last value
 * wins otherwise), but refuses what it would silently accept: bad booleans, reserved headers, invalid
 * agent parameter combinations. Returns the problems instead of throwing; pure.
 */
export function parseQuery(query: Record<string, QueryValue>): ParsedQuery | { problems: string[] } {
  const problems: string[] = [];
  const o: Overrides = {
    present: false,
    baseUrlIgnored: false,
    acquireTokenOptions: {},
    extraHeaders: {},
    extraQuery: {},
  };
  let agentIdentity: string | undefined;
  let username: string | undefined;
  let userId: string | undefined;
  let agentGiven = false;
  for (const [rawKey, value] of Object.entries(query)) {
    const key = rawKey.toLowerCase();
    if (key === "agentidentity" || key === "agentusername" || key === "agentuserid") {
      const v = last(value)?.trim();
      if (!v) continue;
      agentGiven = true;
      if (key === "agentidentity") agentIdentity = v;
      else if (key === "agentusername") username = v;
      else userId = v;
      continue;
    }
    if (!key.startsWith(PREFIX)) continue;
    const name = key.slice(PREFIX.length);
    const originalName = rawKey.slice(PREFIX.length);
    const v = last(value) ?? "";
    if (name === "baseurl") {
      o.baseUrlIgnored = true;
      continue;
    }
    o.present = true;
    if (name === "scopes") {
      const scopes = all(value)
        .flatMap((s) => s.split(" "))
        .filter((s) => s.trim() !== "");
      if (scopes.length > 0) o.scopes = [...(o.scopes ?? []), ...scopes];
    } else if (name === "requestapptoken") {
      const b = parseBool(v);
      if (b === undefined) problems.push(`optionsOverride.RequestAppToken must be true or false, got '${v}'`);
      else if (b) o.requestAppToken = true;
    } else if (name === "relativepath") o.relativePath = v;
    else if (name === "httpmethod") {
      const m = parseHttpMethod(v);
      if (m) o.httpMethod = m;
      else problems.push(`optionsOverride.HttpMethod '${v}' is not an HTTP method`);
    } else if (name === "acceptheader") {
      if (isHeaderValue(v)) o.acceptHeader = v;
      else problems.push("optionsOverride.AcceptHeader contains a line break");
    } else if (name === "contenttype") o.contentType = v;
    else if (name === "acquiretokenoptions.tenant") {
      if (isTenant(v) && !isMetaTenant(v)) o.acquireTokenOptions.tenant = v;
      else problems.push(`optionsOverride.AcquireTokenOptions.Tenant '${v}' is not a tenant id or domain`);
    } else if (name === "acquiretokenoptions.forcerefresh") {
      const b = parseBool(v);
      if (b === undefined)
        problems.push(`optionsOverride.AcquireTokenOptions.ForceRefresh must be true or false, got '${v}'`);
      else o.acquireTokenOptions.forceRefresh = b;
    } else if (name === "acquiretokenoptions.claims") {
      try {
        JSON.parse(v);
        o.acquireTokenOptions.claims = v;
      } catch {
        problems.push("optionsOverride.AcquireTokenOptions.Claims is not JSON");
      }
    } else if (name === "acquiretokenoptions.correlationid") {
      // Microsoft ignores a correlation id that is not a GUID; so do we.
      if (isGuid(v)) o.acquireTokenOptions.correlationId = v;
    } else if (name === "acquiretokenoptions.longrunningwebapisessionkey") {
      if (v.toLowerCase() === "allocateforme")
        problems.push(
          "optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=AllocateForMe is not supported: Microsoft's answer has no place for the allocated key; choose your own (a random string kept by your app)",
        );
      else if (v.length < 8 || v.length > 256 || !isHeaderValue(v))
        problems.push(
          "optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey must be 8 to 256 characters",
        );
      else o.acquireTokenOptions.longRunningWebApiSessionKey = v;
    } else if (name === "acquiretokenoptions.fmipath") {
      if (v !== "") o.acquireTokenOptions.fmiPath = v;
    } else if (UNSUPPORTED.has(name)) {
      problems.push(`optionsOverride.${originalName} is not supported by this sidecar`);
    } else if (name.startsWith("extraheaderparameters.")) {
      const header = originalName.slice("extraheaderparameters.".length);
      if (!isHeaderName(header))
        problems.push(`optionsOverride.ExtraHeaderParameters: '${header}' is not a header name`);
      else if (isReservedHeader(header))
        problems.push(`optionsOverride.ExtraHeaderParameters: '${header}' is a reserved header`);
      else if (!isHeaderValue(v))
        problems.push(`optionsOverride.ExtraHeaderParameters.${header} contains a line break`);
      else o.extraHeaders[header] = v;
    } else if (name.startsWith("extraqueryparameters.")) {
      const param = originalName.slice("extraqueryparameters.".length);
      if (param === "") problems.push("optionsOverride.ExtraQueryParameters needs a parameter name");
      else o.extraQuery[param] = v;
    }
    // Other optionsOverride.* names are ignored, as Microsoft's binder ignores them.
  }
  const agent: AgentParameters = {};
  if ((username || userId) && !agentIdentity)
    problems.push(`${username ? "AgentUsername" : "AgentUserId"} requires AgentIdentity to be specified`);
  if (username && userId) problems.push("AgentUsername and AgentUserId are mutually exclusive");
  if (userId && !isGuid(userId)) problems.push("AgentUserId must be a valid GUID");
  if (agentIdentity && !isGuid(agentIdentity))
    problems.push("AgentIdentity must be the agent identity's client id (a GUID)");
  if (problems.length > 0) return { problems };
  if (agentIdentity) agent.agentIdentity = agentIdentity;
  if (username) agent.user = { kind: "upn", value: username };
  else if (userId) agent.user = { kind: "oid", value: userId };
  return { overrides: o, agent, agentGiven };
}
