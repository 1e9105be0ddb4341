import type { FastifyInstance } from "fastify";
import type { Logger } from "../lib/log.ts";
import { deny, reviewEnvelope } from "./admission.ts";
import { GUARD_PATH } from "./guard.ts";
import { type GuardRequest, type GuardResult, parseGuardReview } from "./guard-review.ts";
import type { WebhookMetrics } from "./metrics.ts";

/**
 * The guard's route on the admission server, beside the mutating one: parse, judge, count, answer. A
 * failure inside a review answers `allowed: false` ("try again"): the entries fail closed anyway.
 */
export function guardRoute(options: {
  review: (request: GuardRequest) => Promise<GuardResult>;
  logger: Logger;
  metrics: WebhookMetrics;
}): (app: FastifyInstance) => void {
  const { logger, metrics } = options;
  return (app) => {
    app.post(GUARD_PATH, async (request, reply) => {
      const parsed = parseGuardReview(request.body);
      if (!parsed.ok) {
        metrics.guardReviews.inc({ kind: "", outcome: "invalid", reason: "" });
        logger.warn({ message: parsed.message }, "invalid AdmissionReview for the guard");
        if ("uid" in parsed) return reply.send(reviewEnvelope(deny(parsed.uid, parsed.message, 400)));
        return reply
          .code(parsed.httpStatus)
          .type("application/problem+json")
          .send({ title: parsed.message, status: parsed.httpStatus });
      }
      const { request: review } = parsed;
      let result: GuardResult | { response: ReturnType<typeof deny>; outcome: "error"; reason: "" };
      try {
        result = await options.review(review);
      } catch (error) {
        logger.error({ err: (error as Error).message, uid: review.uid }, "guard review failed");
        result = {
          response: deny(
            review.uid,
            "the guard could not judge this request (internal error); try again",
            500,
          ),
          outcome: "error",
          reason: "",
        };
      }
      metrics.guardReviews.inc({ kind: review.kind, outcome: result.outcome, reason: result.reason });
      return reply.send(reviewEnvelope(result.response));
    });
  };
}
