/** Something text is written to: `process.stdout`, or a test's collector. */
export interface TextSink {
  /** Writes `text` as it is (lines end with `\n`). */
  write(text: string): unknown;
}

/** Where a command reads and writes, so that `run` works in a process of its own and inside a test. */
export interface RunIo {
  /** Receives the command's output (messages, documents, one line per publish). */
  readonly stdout: TextSink;
  /** Receives errors, progress and notes. */
  readonly stderr: TextSink;
  /** Read for a body given as `-`. Default: none (a `-` body is then a usage error). */
  readonly stdin?: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>;
  /** Environment variables (credentials). Default: none. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Directory that relative module paths start from. Default: `process.cwd()`. */
  readonly cwd?: string;
  /** Aborting it stops a running command as SIGINT/SIGTERM do: `tail` drains and ends, `publish` stops repeating, `request` stops waiting. */
  readonly signal?: AbortSignal;
}

/** The exit statuses of `ktransport`. */
export const EXIT = {
  /** The command did what it was asked. */
  ok: 0,
  /** The broker refused or failed (connection, credentials, publish), the responder of a request failed, or a module could not be loaded. */
  failure: 1,
  /** The command line is wrong: unknown command, option or URL scheme, a missing or malformed argument. */
  usage: 2,
  /** `request` got no reply within its `--timeout`. */
  noReply: 124,
  /** `publish` was interrupted by SIGINT/SIGTERM before it sent everything it was asked to, or `request` before its reply came. */
  interrupted: 130,
} as const;

/** A mistake in the command line: reported with a hint to `--help`, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Collects the body bytes of a `-` argument. */
export async function readAll(input: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk));
  return Buffer.concat(chunks);
}
