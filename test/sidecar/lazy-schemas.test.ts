import { describe, expect, it } from "vitest";
import { lazySchemaCompilers } from "../../src/sidecar/lazy-schemas.ts";

// The sidecar hands fastify compilers that build Ajv validators and fast-json-stringify serialisers on
// first use; they must behave as fastify's defaults do.
describe("lazySchemaCompilers", () => {
  const schema = {
    type: "object",
    properties: { apiName: { type: "string", minLength: 1, maxLength: 4 } },
    required: ["apiName"],
  };

  it("validates with Ajv on first use and reports Ajv's errors on the function fastify holds", () => {
    const { compilersFactory } = lazySchemaCompilers();
    const compiler = compilersFactory.buildValidator?.({}, { customOptions: { validateSchema: false } });
    const validate = compiler?.({
      schema,
      method: "GET",
      url: "/x/:apiName",
      httpPart: "params",
    }) as unknown as ((data: unknown) => boolean) & {
      errors?: Array<{ instancePath: string; keyword: string }> | null;
    };
    expect(validate({ apiName: "graph-app" })).toBe(false);
    expect(validate.errors?.[0]).toMatchObject({ instancePath: "/apiName", keyword: "maxLength" });
    expect(validate({ apiName: "abc" })).toBe(true);
    expect(validate.errors ?? null).toBeNull();
  });

  it("serialises by the response schema on first use", () => {
    const { compilersFactory } = lazySchemaCompilers();
    const compiler = compilersFactory.buildSerializer?.({}, {});
    const serialise = compiler?.({
      schema: { type: "object", properties: { status: { type: "integer" } } },
      method: "GET",
      url: "/x",
      httpStatus: "200",
    }) as unknown as (data: unknown) => string;
    expect(JSON.parse(serialise({ status: 200, secret: "not in the schema" }))).toEqual({ status: 200 });
  });
});
