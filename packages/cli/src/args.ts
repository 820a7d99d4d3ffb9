import { UsageError } from './io.js';

/** Runs a `parseArgs` call, its errors turned into usage errors. */
export function parse<T>(parseArgs: () => T): T {
  try {
    return parseArgs();
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.replace(/\. To specify a positional argument.*$/s, '') : String(error));
  }
}

/** A whole number in [min, max] from an option's text. */
export function integer(name: string, text: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}, not "${text}"`);
  }
  return value;
}

/** A positive number (fractions allowed) from an option's text. */
export function positive(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) throw new UsageError(`--${name} must be a positive number, not "${text}"`);
  return value;
}

/** `name=value` pairs of a repeatable option; the value may contain `=`, the name may not be empty. */
export function pairs(name: string, items: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${name} takes name=value, not "${item}"`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** Connect timeout shared by the broker commands. */
export const TIMEOUT_OPTION = { timeout: { type: 'string' } } as const;

/** Milliseconds from `--timeout` seconds (default 10; at least 1 ms, however small the fraction). */
export function timeoutMs(text: string | undefined): number {
  return Math.max(1, Math.round((positive('timeout', text) ?? 10) * 1000));
}
