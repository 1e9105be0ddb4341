import { patchBase64 } from "./json-text.ts";
import type { JsonPatchOperation } from "./patch.ts";
import { isObject, type JsonObject, stringAt } from "./raw.ts";
import type { Refusal } from "./refusals.ts";

/**
 * admission.k8s.io/v1 AdmissionReview: validating what the API server sent and building the answer
 * (pure). A review that is not one (wrong apiVersion or kind, no uid) gets an HTTP error: there is no uid
 * to answer to. A review with a uid but an unusable request gets `allowed: false` with the reason, so
 * the client sees it.
 */

export const ADMISSION_API_VERSION = "admission.k8s.io/v1";

export type Operation = "CREATE" | "UPDATE" | "DELETE" | "CONNECT";

export interface AdmissionRequest {
  uid: string;
  operation: Operation;
  namespace: string;
  /** `resource.resource` (pods) and the subresource ("" or "ephemeralcontainers"). */
  resource: string;
  subResource: string;
  object: JsonObject;
  oldObject: JsonObject | undefined;
  dryRun: boolean;
  user: string;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: "JSONPatch";
  patch?: string;
  status?: { code: number; message: string; reason?: string };
  auditAnnotations?: Record<string, string>;
  warnings?: string[];
}

export type Parsed =
  | { ok: true; request: AdmissionRequest }
  /** Not an AdmissionReview at all: answer with this HTTP status and message. */
  | { ok: false; httpStatus: number; message: string }
  /** An AdmissionReview we cannot judge: refuse it with this message. */
  | { ok: false; httpStatus: 200; uid: string; message: string };

const OPERATIONS: readonly string[] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

export function parseReview(body: unknown): Parsed {
  if (!isObject(body)) return { ok: false, httpStatus: 400, message: "the body is not a JSON object" };
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== "AdmissionReview") {
    return {
      ok: false,
      httpStatus: 400,
      message: `expected apiVersion ${ADMISSION_API_VERSION} and kind AdmissionReview, got ${JSON.stringify(
        String(body.apiVersion ?? ""),
      ).slice(0, 80)} and ${JSON.stringify(String(body.kind ?? "")).slice(0, 40)}`,
    };
  }
  const request = body.request;
  const uid = stringAt(request, "uid");
  if (!isObject(request) || !uid) {
    return { ok: false, httpStatus: 400, message: "the AdmissionReview has no request with a uid" };
  }
  const refuse = (message: string): Parsed => ({ ok: false, httpStatus: 200, uid, message });
  const operation = stringAt(request, "operation") ?? "";
  if (!OPERATIONS.includes(operation)) return refuse(`unknown operation '${operation.slice(0, 20)}'`);
  const resource = request.resource;
  const resourceName = stringAt(resource, "resource");
  if (
    !isObject(resource) ||
    (resource.group ?? "") !== "" ||
    resource.version !== "v1" ||
    resourceName !== "pods"
  ) {
    return refuse(
      "this webhook admits core/v1 pods only; check the rules of the MutatingWebhookConfiguration",
    );
  }
  const object = request.object;
  if (!isObject(object) || !isObject(object.spec)) return refuse("the request carries no pod object");
  const oldObject = isObject(request.oldObject) ? request.oldObject : undefined;
  const namespace = stringAt(request, "namespace") || stringAt(object.metadata, "namespace") || "";
  if (!namespace) return refuse("the request names no namespace");
  return {
    ok: true,
    request: {
      uid,
      operation: operation as Operation,
      namespace,
      resource: resourceName,
      subResource: stringAt(request, "subResource") ?? "",
      object,
      oldObject,
      dryRun: request.dryRun === true,
      user: stringAt(request.userInfo, "username") ?? "",
    },
  };
}

/**
 * The last patch `allow` encoded: base64. A response whose patch has this content needs no escaping;
 * any other takes the general path (correct either way; nothing is remembered per response).
 */
let lastBase64: string | undefined;

export function allow(
  uid: string,
  patch: JsonPatchOperation[],
  auditAnnotations?: Record<string, string>,
): AdmissionResponse {
  const response: AdmissionResponse = { uid, allowed: true };
  if (patch.length > 0) {
    response.patchType = "JSONPatch";
    response.patch = patchBase64(patch);
    lastBase64 = response.patch;
  }
  if (auditAnnotations && Object.keys(auditAnnotations).length > 0)
    response.auditAnnotations = auditAnnotations;
  return response;
}

/** The metav1 StatusReason that goes with each code deny is given (they must agree: clients read both). */
const STATUS_REASONS = {
  400: "BadRequest",
  403: "Forbidden",
  500: "InternalError",
} as const;

/**
 * `allowed: false`. 403 for a refusal, 400 for a review we cannot read, 500 when our review failed
 * (the client may try again); the status reason matches the code.
 */
export function deny(
  uid: string,
  refusals: readonly Refusal[] | string,
  code: keyof typeof STATUS_REASONS = 403,
): AdmissionResponse {
  const message = typeof refusals === "string" ? refusals : refusals.map((r) => r.message).join("; ");
  const reason =
    typeof refusals === "string"
      ? code === 500
        ? "InternalError"
        : "Invalid"
      : (refusals[0]?.reason ?? "Refused");
  return {
    uid,
    allowed: false,
    status: { code, message: `agentid: ${message}`, reason: STATUS_REASONS[code] },
    auditAnnotations: { refused: reason },
  };
}

const ENVELOPE_HEAD = `{"apiVersion":${JSON.stringify(ADMISSION_API_VERSION)},"kind":"AdmissionReview","response":`;

/**
 * The answer's JSON text (what JSON.stringify(reviewEnvelope(response)) means, keys in another order):
 * the patch, most of the answer's bytes, is spliced in rather than scanned again for characters to
 * escape, since base64 has none. Built once; the server sends it as it is.
 */
export function encodeReview(response: AdmissionResponse): string {
  if (response.patch === undefined || response.patch !== lastBase64)
    return `${ENVELOPE_HEAD}${JSON.stringify(response)}}`;
  const { patch, ...rest } = response;
  return `${ENVELOPE_HEAD}${JSON.stringify(rest).slice(0, -1)},"patch":"${patch}"}}`;
}

export function reviewEnvelope(response: AdmissionResponse): {
  apiVersion: string;
  kind: string;
  response: AdmissionResponse;
} {
  return { apiVersion: ADMISSION_API_VERSION, kind: "AdmissionReview", response };
}
