import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Runs a TypeScript file of this folder in a child Node process, with the
 * workspace packages' sources (the `@ktransport/source` export condition), for
 * tests that kill a real consumer process. Node 20 cannot run TypeScript: a
 * module hook transpiles `.ts` files with the project's own TypeScript
 * compiler (type-stripping only), and resolves a `.js` import to its `.ts`
 * source. The hook files are written to a temporary folder (they are plain
 * JavaScript, outside the linted TypeScript program).
 */

const HOOKS = `
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const ts = createRequire(process.env.KT_TYPESCRIPT)('typescript');
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (specifier.endsWith('.js') && (specifier.startsWith('.') || specifier.startsWith('/'))) return next(specifier.slice(0, -3) + '.ts', context);
    throw error;
  }
}
export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const file = fileURLToPath(url);
  const { outputText } = ts.transpileModule(await readFile(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, experimentalDecorators: true, verbatimModuleSyntax: true },
  });
  return { format: 'module', source: outputText, shortCircuit: true };
}
`;

const here = dirname(fileURLToPath(import.meta.url));

export interface Child {
  readonly process: ChildProcess;
  /** Lines the child printed on stdout so far. */
  readonly lines: string[];
  /** Waits for a line that `test` accepts. */
  line(test: (line: string) => boolean, timeoutMs: number): Promise<string>;
  kill(): void;
}

/** Starts `node <file of this folder> ...args` with the TypeScript hook. */
export async function runChild(file: string, args: string[]): Promise<Child> {
  const dir = await mkdtemp(join(tmpdir(), 'ktransport-amqp-child-'));
  await writeFile(join(dir, 'hooks.mjs'), HOOKS);
  await writeFile(
    join(dir, 'register.mjs'),
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`,
  );
  await writeFile(join(dir, 'main.mjs'), `await import(${JSON.stringify(pathToFileURL(join(here, file)).href)});\n`);
  // The compiler the repository's own scripts use (found from here, in the workspace root).
  const typescript = createRequire(import.meta.url).resolve('typescript');
  const child = spawn(
    process.execPath,
    ['--conditions=@ktransport/source', '--import', pathToFileURL(join(dir, 'register.mjs')).href, join(dir, 'main.mjs'), ...args],
    {
      cwd: here,
      env: { ...process.env, KT_TYPESCRIPT: typescript },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  let errors = '';
  let buffered = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
    for (const wake of [...waiters]) wake();
  });
  child.stderr.on('data', (chunk: Buffer) => void (errors = (errors + chunk.toString()).slice(-4_000)));
  child.once('exit', () => {
    for (const wake of [...waiters]) wake();
    void rm(dir, { recursive: true, force: true });
  });
  return {
    process: child,
    lines,
    line: (test, timeoutMs) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`the child printed no expected line within ${timeoutMs} ms; stdout: ${lines.slice(-5).join(' | ')}; stderr: ${errors}`));
        }, timeoutMs);
        const check = (): void => {
          const found = lines.find(test);
          if (found !== undefined) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`the child exited (${child.exitCode ?? child.signalCode}); stderr: ${errors}`));
          }
        };
        waiters.add(check);
        check();
      }),
    kill: () => void child.kill('SIGKILL'),
  };
}
