import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * Paths pino censors wherever they appear. Tokens, assertions and secrets must never reach a log line,
 * so every logger in the project is built here and shares this list.
 */
export const REDACTED_PATHS: readonly string[] = [
  "authorization",
  "*.authorization",
  "*.Authorization",
  "headers.authorization",
  "*.headers.authorization",
  "req.headers.authorization",
  "req.headers.cookie",
  "token",
  "*.token",
  "access_token",
  "*.access_token",
  "refresh_token",
  "*.refresh_token",
  "id_token",
  "*.id_token",
  "assertion",
  "*.assertion",
  "client_assertion",
  "*.client_assertion",
  "client_secret",
  "*.client_secret",
  "clientSecret",
  "*.clientSecret",
  "secret",
  "*.secret",
  "user_federated_identity_credential",
  "*.user_federated_identity_credential",
  "password",
  "*.password",
];

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
export const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

export interface LoggerOptions {
  name: string;
  level?: LogLevel;
  /** Where lines go; stdout when absent. Tests pass a stream to scan what was logged. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? "info",
      redact: { paths: [...REDACTED_PATHS], censor: "[redacted]" },
      base: { component: options.name },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A JWT-shaped string: three base64url segments, the first starting like a JSON header. */
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

/**
 * Removes anything that looks like a JWT from free text, such as an error message from a library that
 * echoes a request. Used on every error text that leaves a process (HTTP problems, logs, conditions).
 */
export function scrubTokens(text: string): string {
  return text.replace(JWT_PATTERN, "[redacted-jwt]");
}
