import type { FastifyReply } from "fastify";

/**
 * Microsoft's CacheControl middleware marks every 2xx answer uncacheable. Here the success paths set
 * the headers themselves (one prepared object, no global hook on the hot path).
 */
export const NO_CACHE: Readonly<Record<string, string>> = {
  "cache-control": "no-cache, no-store, must-revalidate",
  expires: "0",
  pragma: "no-cache",
};

/** The headers of a JSON 200 (exported for the benchmark's baseline). */
export const JSON_OK: Readonly<Record<string, string>> = {
  "content-type": "application/json; charset=utf-8",
  ...NO_CACHE,
};
const TEXT_OK: Readonly<Record<string, string>> = {
  "content-type": "text/plain; charset=utf-8",
  ...NO_CACHE,
};

/** A 200 with a body already serialised as JSON. */
export function sendJsonText(reply: FastifyReply, json: string): FastifyReply {
  return reply.headers(JSON_OK).send(json);
}

/** A 200 with an object, serialised by JSON.stringify (the routes have no schemas: see server.ts). */
export function sendObject(reply: FastifyReply, body: object): FastifyReply {
  return reply.headers(JSON_OK).send(JSON.stringify(body));
}

export function sendText(reply: FastifyReply, text: string): FastifyReply {
  return reply.headers(TEXT_OK).send(text);
}
