/** JSON schemas for the sidecar's routes (Microsoft's OpenAPI shapes). */

export const apiNameParams = {
  type: "object",
  properties: { apiName: { type: "string", minLength: 1, maxLength: 256 } },
  required: ["apiName"],
} as const;

/** Query keys are dynamic (`optionsOverride.*`); values are parsed and checked in overrides.ts. */
export const anyQuery = { type: "object" } as const;

export const problemSchema = {
  type: "object",
  properties: {
    type: { type: "string" },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
  },
  required: ["type", "title", "status"],
} as const;

export const authorizationHeaderResult = {
  type: "object",
  properties: { authorizationHeader: { type: "string" } },
  required: ["authorizationHeader"],
} as const;

export const downstreamApiResult = {
  type: "object",
  properties: {
    statusCode: { type: "integer" },
    headers: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } },
    content: { type: ["string", "null"] },
  },
  required: ["statusCode", "headers", "content"],
} as const;

export const validateResult = {
  type: "object",
  properties: {
    protocol: { type: "string" },
    token: { type: "string" },
    claims: { type: "object", additionalProperties: true },
  },
  required: ["protocol", "token", "claims"],
} as const;
