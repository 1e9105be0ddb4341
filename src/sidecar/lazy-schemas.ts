import { createRequire } from "node:module";
import type { FastifyServerOptions } from "fastify";

type CompilersFactory = NonNullable<
  NonNullable<FastifyServerOptions["schemaController"]>["compilersFactory"]
>;
type ValidatorFactory = NonNullable<CompilersFactory["buildValidator"]>;
type SerializerFactory = NonNullable<CompilersFactory["buildSerializer"]>;
type Validate = ((data: unknown, context?: unknown) => unknown) & { errors?: unknown; schemaEnv?: unknown };
type Serialize = (data: unknown) => string;

/** One standalone module as schemas.generated.ts holds it: CommonJS code wrapped in a function. */
export type ModuleBody = (module: { exports: unknown }, exports: unknown, require: NodeJS.Require) => void;

/** Validators and serialisers generated ahead of time (scripts/generate-sidecar-schemas.ts). */
export interface Precompiled {
  validators: Record<string, ModuleBody>;
  serializers: Record<string, ModuleBody>;
}

/**
 * What makes a validator: the HTTP part (fastify's Ajv coerces querystring, params and headers, not
 * bodies) and the schema itself, so a changed schema never meets stale generated code (pure).
 */
export function validatorKey(opts: { schema?: unknown; httpPart?: string }): string {
  return `${opts.httpPart ?? "body"} ${JSON.stringify(opts.schema)}`;
}

/** A serialiser depends on the response schema only (pure). */
export function serializerKey(opts: { schema?: unknown }): string {
  return JSON.stringify(opts.schema);
}

function restore<T>(body: ModuleBody, require: NodeJS.Require): T {
  const module = { exports: {} as unknown };
  body(module, module.exports, require);
  return module.exports as T;
}

/**
 * Fastify's own schema compilers (Ajv for validation, fast-json-stringify for responses), loaded and
 * run on a route's first request instead of before the server listens. The two packages and their
 * code generation are about a hundred modules and a fifth of the time from process start to ready;
 * `warm()` loads them in the background once the port is open. The validation and serialisation are
 * fastify's defaults, unchanged: the same packages, resolved from fastify itself, with the same options.
 *
 * With `precompiled` (the sidecar passes schemas.generated.ts), a schema compiled ahead of time by the
 * same packages is restored from its generated code instead, and Ajv and fast-json-stringify are never
 * loaded (`warm()` does nothing); only the small runtime helpers the generated code requires are.
 */
export interface LazySchemaCompilers {
  compilersFactory: CompilersFactory;
  warm(): void;
}

export function lazySchemaCompilers(precompiled?: Precompiled): LazySchemaCompilers {
  const fromFastify = createRequire(createRequire(import.meta.url).resolve("fastify"));
  // The generated code requires its runtime helpers as the compiler package that wrote it would.
  const helpersOf = (pkg: string) => createRequire(fromFastify.resolve(pkg));
  let validatorSelector: (() => ValidatorFactory) | undefined;
  let serializerSelector: (() => SerializerFactory) | undefined;
  const loadValidator = () => {
    validatorSelector ??= fromFastify("@fastify/ajv-compiler") as () => ValidatorFactory;
    return validatorSelector;
  };
  const loadSerializer = () => {
    serializerSelector ??= fromFastify("@fastify/fast-json-stringify-compiler") as () => SerializerFactory;
    return serializerSelector;
  };

  // Generated code when this schema has some (the compiler's helpers are all it needs), else the compiler.
  const restoreOrCompile = <F>(body: ModuleBody | undefined, compilerPackage: string, compile: () => F): F =>
    body ? restore<F>(body, helpersOf(compilerPackage)) : compile();

  const buildValidator = ((...factoryArgs: Parameters<ValidatorFactory>) => {
    let compiler: ReturnType<ValidatorFactory> | undefined;
    return (routeSchema: Parameters<ReturnType<ValidatorFactory>>[0]) => {
      let real: Validate | undefined;
      const validate: Validate = (data, context) => {
        real ??= restoreOrCompile(
          precompiled?.validators[validatorKey(routeSchema)],
          "@fastify/ajv-compiler",
          () => {
            compiler ??= loadValidator()()(...factoryArgs);
            return compiler(routeSchema) as unknown as Validate;
          },
        );
        const result = real(data, context);
        // fastify reads the errors from the function it was given.
        validate.errors = real.errors;
        return result;
      };
      // Tells fastify to pass the parent object, as it does for Ajv's own functions (root coercion).
      validate.schemaEnv = true;
      return validate;
    };
  }) as unknown as ValidatorFactory;

  const buildSerializer = ((...factoryArgs: Parameters<SerializerFactory>) => {
    let compiler: ReturnType<SerializerFactory> | undefined;
    return (routeSchema: Parameters<ReturnType<SerializerFactory>>[0]) => {
      let real: Serialize | undefined;
      return (data: unknown) => {
        real ??= restoreOrCompile(
          precompiled?.serializers[serializerKey(routeSchema)],
          "@fastify/fast-json-stringify-compiler",
          () => {
            compiler ??= loadSerializer()()(...factoryArgs);
            return compiler(routeSchema) as unknown as Serialize;
          },
        );
        return real(data);
      };
    };
  }) as unknown as SerializerFactory;

  return {
    compilersFactory: { buildValidator, buildSerializer },
    warm() {
      if (precompiled) return;
      loadValidator();
      loadSerializer();
    },
  };
}
