/**
 * Text that came from someone else (a pod's fields, an API error) made safe to show: in an Event, an
 * admission answer, a log line a person reads in a terminal. Control characters could forge extra lines
 * (newlines), drive a terminal (ANSI escapes start with ESC), or reorder what a reader sees (Unicode bidi
 * overrides); none belongs in one line of text.
 */

/**
 * C0 (includes \t \n \r), DEL, C1, the line and paragraph separators U+2028/U+2029, and the bidi embedding,
 * override and isolate characters U+202A–U+202E and U+2066–U+2069.
 */
const CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069";
const HAS_CONTROL = new RegExp(`[${CONTROLS}]`);
const CONTROL = new RegExp(`[${CONTROLS}]`, "g");
/** The ones that separate words (tab, line breaks): a space keeps the words apart. */
const SPACING = /[\t\n\v\f\r\u2028\u2029]/;

/** Every control character replaced: a line break or tab by a space, anything else by `?`. */
export function replaceControls(text: string): string {
  // The common case (nothing to replace) allocates nothing.
  if (!HAS_CONTROL.test(text)) return text;
  return text.replace(CONTROL, (c) => (SPACING.test(c) ? " " : "?"));
}

/**
 * A value to quote in a message: at most `max` characters (then `…`), control characters replaced. 64 fits
 * a container or volume name (a DNS label, at most 63) and keeps an annotation value readable; object names
 * (DNS subdomains) are at most 253.
 */
export function printable(value: string, max = 64): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  return replaceControls(cut);
}

/** The longest name a Kubernetes object can have (a DNS subdomain). */
export const MAX_OBJECT_NAME = 253;
