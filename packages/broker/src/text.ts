/**
 * Text that travels in headers. Brokers are stricter than JavaScript strings:
 * MQTT strings must be well-formed UTF-8 without control characters (Mosquitto
 * drops the connection of a client that sends one), and every MQTT string is at
 * most 65,535 bytes. Text that ktransport writes itself (error messages, excerpts
 * of a foreign payload) goes through `headerText`, so that it is valid on every
 * wire and bounded; transports check a caller's headers with `invalidTextIndex`.
 */

/**
 * Characters a header must not carry: C0 and C1 controls (U+0000-U+001F,
 * U+007F-U+009F), unpaired surrogates (not encodable as UTF-8) and Unicode
 * noncharacters (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF), as MQTT 5 (1.5.4) and
 * Mosquitto's UTF-8 check define them.
 */
const INVALID = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;
const INVALID_ALL = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/gu;

/** Default bound of header text written by ktransport (dead-letter reasons): 1,024 UTF-8 bytes. */
export const HEADER_TEXT_MAX_BYTES = 1_024;

/** The index of the first character a header must not carry, or -1 when there is none. */
export function invalidTextIndex(text: string): number {
  const match = INVALID.exec(text);
  return match ? match.index : -1;
}

/**
 * `text` made safe for any header: characters a header must not carry are
 * written as `\uXXXX` escapes, and the result is cut to at most `maxBytes`
 * UTF-8 bytes (on a character boundary, ending in `…` when cut).
 */
export function headerText(text: string, maxBytes: number = HEADER_TEXT_MAX_BYTES): string {
  // More characters than bytes allowed is too long whatever they are: cut first, so that the work stays bounded.
  const long = text.length > maxBytes;
  let safe = long ? text.slice(0, maxBytes) : text;
  if (INVALID.test(safe)) safe = safe.replace(INVALID_ALL, escape);
  if (!long && Buffer.byteLength(safe) <= maxBytes) return safe;
  return cut(safe, maxBytes - 3) + '…';
}

function escape(char: string): string {
  let out = '';
  for (let i = 0; i < char.length; i++) out += `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return out;
}

/** The longest prefix of `text` (valid, no split surrogate pair) that fits in `maxBytes` UTF-8 bytes. */
function cut(text: string, maxBytes: number): string {
  let bytes = 0;
  let i = 0;
  for (;;) {
    const code = text.codePointAt(i);
    if (code === undefined) break;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (bytes + size > maxBytes) break;
    bytes += size;
    i += code >= 0x10000 ? 2 : 1;
  }
  return text.slice(0, i);
}

/** An error's message as bounded, header-safe text. */
export function errorText(error: unknown, maxBytes: number = HEADER_TEXT_MAX_BYTES): string {
  return headerText(error instanceof Error ? error.message : String(error), maxBytes);
}
