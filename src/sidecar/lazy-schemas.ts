import { createRequire } from "node:module";
import type { FastifyServerOptions } from "fastify";

type CompilersFactory = NonNullable<
  NonNullable<FastifyServerOptions["schemaController"]>["compilersFactory"]
>;
type ValidatorFactory = NonNullable<CompilersFactory["buildValidator"]>;
type SerializerFactory = NonNullable<CompilersFactory["buildSerializer"]>;
type Validate = ((data: unknown, context?: unknown) => unknown) & { errors?: unknown; schemaEnv?: unknown };
type Serialize = (data: unknown) => string;

/**
 * Fastify's own schema compilers (Ajv for validation, fast-json-stringify for responses), loaded and
 * run on a route's first request instead of before the server listens. The two packages and their
 * code generation are about a hundred modules and a fifth of the time from process start to ready;
 * `warm()` loads them in the background once the port is open. The validation and serialisation are
 * fastify's defaults, unchanged: the same packages, resolved from fastify itself, with the same options.
 */
export interface LazySchemaCompilers {
  compilersFactory: CompilersFactory;
  warm(): void;
}

export function lazySchemaCompilers(): LazySchemaCompilers {
  const fromFastify = createRequire(createRequire(import.meta.url).resolve("fastify"));
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

  const buildValidator = ((...factoryArgs: Parameters<ValidatorFactory>) => {
    let compiler: ReturnType<ValidatorFactory> | undefined;
    return (routeSchema: Parameters<ReturnType<ValidatorFactory>>[0]) => {
      let real: Validate | undefined;
      const validate: Validate = (data, context) => {
        if (real === undefined) {
          compiler ??= loadValidator()()(...factoryArgs);
          real = compiler(routeSchema) as unknown as Validate;
        }
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
        if (real === undefined) {
          compiler ??= loadSerializer()()(...factoryArgs);
          real = compiler(routeSchema) as unknown as Serialize;
        }
        return real(data);
      };
    };
  }) as unknown as SerializerFactory;

  return {
    compilersFactory: { buildValidator, buildSerializer },
    warm() {
      loadValidator();
      loadSerializer();
    },
  };
}
