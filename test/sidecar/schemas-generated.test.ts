import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GENERATED_PATH, renderGeneratedSchemas } from "../../scripts/generate-sidecar-schemas.ts";
import { lazySchemaCompilers } from "../../src/sidecar/lazy-schemas.ts";
import { serializers, validators } from "../../src/sidecar/routes/schemas.generated.ts";
import { apiNameParams, authorizationHeaderResult, problemSchema } from "../../src/sidecar/routes/schemas.ts";

type Validate = ((data: unknown) => boolean) & { errors?: unknown };
const AJV_OPTIONS = { customOptions: { validateSchema: false } };

function validatorFrom(precompiled: boolean, schema: object): Validate {
  const { compilersFactory } = lazySchemaCompilers(precompiled ? { validators, serializers } : undefined);
  const compiler = compilersFactory.buildValidator?.({}, AJV_OPTIONS);
  return compiler?.({ schema, method: "GET", url: "/x/:apiName", httpPart: "params" }) as unknown as Validate;
}

function serializerFrom(precompiled: boolean, schema: object): (data: unknown) => string {
  const { compilersFactory } = lazySchemaCompilers(precompiled ? { validators, serializers } : undefined);
  const compiler = compilersFactory.buildSerializer?.({}, {});
  return compiler?.({ schema, method: "GET", url: "/x", httpStatus: "200" }) as unknown as (
    d: unknown,
  ) => string;
}

describe("schemas.generated.ts", () => {
  it("is what the generator writes from the routes' current schemas (run generate-schemas.ts)", async () => {
    expect(readFileSync(GENERATED_PATH, "utf8")).toBe(await renderGeneratedSchemas());
  });

  it("restores validators that answer and report errors exactly as Ajv compiled at run time", () => {
    const restored = validatorFrom(true, apiNameParams);
    const compiled = validatorFrom(false, apiNameParams);
    for (const input of [
      { apiName: "graph" },
      { apiName: "" },
      { apiName: "x".repeat(257) },
      {},
      { apiName: 7 },
    ]) {
      const a = { ...input };
      const b = { ...input };
      expect([restored(a), restored.errors ?? null, a]).toEqual([compiled(b), compiled.errors ?? null, b]);
    }
    // Coercion as fastify's Ajv does for params: a number becomes a string.
    const coerced: { apiName: unknown } = { apiName: 7 };
    expect(restored(coerced)).toBe(true);
    expect(coerced.apiName).toBe("7");
  });

  it("restores serialisers that write what fast-json-stringify writes, dropping what the schema lacks", () => {
    for (const [schema, value] of [
      [authorizationHeaderResult, { authorizationHeader: "Bearer x", extra: "dropped" }],
      [problemSchema, { type: "t", title: "Bad", status: 400, detail: 'a "quoted" detail' }],
    ] as const) {
      expect(serializerFrom(true, schema)(value)).toBe(serializerFrom(false, schema)(value));
    }
    expect(
      JSON.parse(serializerFrom(true, authorizationHeaderResult)({ authorizationHeader: "B", x: 1 })),
    ).toEqual({
      authorizationHeader: "B",
    });
  });

  it("compiles a schema it has no generated code for, as before", () => {
    const other = { type: "object", properties: { apiName: { type: "string", maxLength: 2 } } };
    const validate = validatorFrom(true, other);
    expect(validate({ apiName: "abc" })).toBe(false);
    expect(validate({ apiName: "ab" })).toBe(true);
  });
});
