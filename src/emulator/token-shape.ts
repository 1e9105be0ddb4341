import type { ResourceTokenSettings } from "./claims.ts";
import type { OptionalClaimSpec } from "./directory.ts";
import { type Resource, TOKEN_EXCHANGE_APP_ID } from "./store.ts";

/** Microsoft Graph's app id. */
export const GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000";

/**
 * Optional claims Microsoft Graph has configured on its side, as its tokens show (the OBO capture in
 * test/fixtures/entra/obo-graph-user-token-v1.json: `idtyp: "user"` and the facet claims on a user token).
 * A directory may override them by giving Graph its own `optionalClaims`.
 */
const GRAPH_OPTIONAL_CLAIMS: OptionalClaimSpec[] = [
  { name: "idtyp", additionalProperties: ["include_user_token"] },
  { name: "xms_act_fct" },
  { name: "xms_sub_fct" },
  { name: "xms_tnt_fct" },
  { name: "xms_idrel" },
];

const FACET_CLAIMS = new Set(["xms_act_fct", "xms_sub_fct", "xms_tnt_fct", "xms_idrel"]);

/**
 * How a resource's tokens look (pure). `requested` is the resource identifier as the client wrote it in
 * `scope` (before `/.default`), which a v1 `aud` repeats.
 */
export function tokenSettings(resource: Resource, requested: string): ResourceTokenSettings {
  if (resource.appId === TOKEN_EXCHANGE_APP_ID) {
    // T1/T2 captures: v2, `aud` the exchange app's GUID, not api://AzureADTokenExchange.
    return {
      version: 2,
      audience: TOKEN_EXCHANGE_APP_ID,
      idtypOnUserTokens: false,
      facetClaims: false,
      isExchange: true,
    };
  }
  const isGraph = resource.appId === GRAPH_APP_ID;
  const optional = resource.optionalClaims?.accessToken ?? (isGraph ? GRAPH_OPTIONAL_CLAIMS : []);
  const has = (name: string, property?: string) =>
    optional.some(
      (c) => c.name === name && (property === undefined || (c.additionalProperties ?? []).includes(property)),
    );
  // Entra: a null requestedAccessTokenVersion means v1 (app manifest reference); Graph's tokens are v1. A
  // blueprint's tokens are v2 unless it says otherwise: the capture of a user token for a blueprint's scope
  // (capture-user-token-for-blueprint-v2.json) is v2, the blueprint's set-up in it sets no version.
  const asked = resource.requestedAccessTokenVersion;
  const version = asked === 2 || (asked === undefined && resource.kind === "agentIdentityBlueprint") ? 2 : 1;
  return {
    version,
    audience: audienceFor(resource, requested, version, has("aud", "use_guid")),
    idtypOnUserTokens: has("idtyp", "include_user_token"),
    facetClaims: optional.some((c) => FACET_CLAIMS.has(c.name)),
    isExchange: false,
  };
}

/**
 * v2 `aud` is always the app id. A v1 `aud` is "any app ID URI, with or without a trailing slash, and the
 * client ID of the resource" unless the resource sets `aud` with `use_guid` (optional-claims-reference);
 * the emulator repeats the identifier as the client asked for it (emulator choice: Learn calls it
 * runtime-dependent). A directory `audience` overrides both (Graph's `https://graph.microsoft.com`).
 */
function audienceFor(resource: Resource, requested: string, version: 1 | 2, useGuid: boolean): string {
  if (resource.audienceOverride !== undefined) return resource.audienceOverride;
  if (version === 2 || useGuid) return resource.appId;
  const asked = requested.replace(/\/+$/, "");
  return asked.toLowerCase() === resource.appId.toLowerCase() ? resource.appId : asked;
}
