import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { asyncApiDocument, type AsyncApiOptions, toYaml } from '@ktransport/asyncapi';
import { pairs, parse } from './args.js';
import { EXIT, type RunIo, UsageError } from './io.js';
import { describe } from './session.js';

/** Help of `ktransport asyncapi`. */
export const ASYNCAPI_HELP = `Usage: ktransport asyncapi <module> [options]

Imports a JavaScript module (a path from the current directory) and prints the
AsyncAPI 3.0 document of the services it exports, in YAML.

The export (default: the default export, else one named "services") is one of:
  - an array of classes or instances with @Subscribe / @Publishes methods;
  - an object { services, info?, servers?, codecs?, defaultCodec?, ... }: the
    options of asyncApiDocument from @ktransport/asyncapi;
  - a function (not a class) returning, or resolving to, either of these.
A single class is taken as [that class].

Options:
  -e, --export NAME        the export to read
      --title TEXT         info.title (default: the module's, else its file name)
      --version TEXT       info.version (default: the module's, else 0.0.0)
      --description TEXT   info.description
      --server name=url    a server (repeatable; credentials are never written)
      --json               JSON instead of YAML
  -h, --help               this help

The module is imported as it is: TypeScript must be compiled first, and the
module imports its own reflect-metadata and @ktransport/broker.

Example:
  ktransport asyncapi dist/services.js --title Orders --version 1.2.0 \\
    --server production=mqtts://broker.example:8883 > asyncapi.yaml
`;

const OPTIONS = {
  export: { type: 'string', short: 'e' },
  title: { type: 'string' },
  version: { type: 'string' },
  description: { type: 'string' },
  server: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `ktransport asyncapi`. */
export async function asyncapiCommand(args: readonly string[], io: RunIo): Promise<number> {
  const { values, positionals } = parse(() => parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(ASYNCAPI_HELP);
    return EXIT.ok;
  }
  const [path, ...extra] = positionals;
  if (path === undefined) throw new UsageError('asyncapi needs <module>');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const servers = pairs('server', values.server);

  const file = resolve(io.cwd ?? process.cwd(), path);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    io.stderr.write(`ktransport: cannot import ${file}: ${describe(error)}\n`);
    return EXIT.failure;
  }
  const name = values.export ?? ('default' in module ? 'default' : 'services');
  if (!(name in module)) {
    throw new UsageError(`${file} has no export "${name}" (exports: ${Object.keys(module).join(', ') || 'none'}); choose one with --export`);
  }
  let found = module[name];
  if (typeof found === 'function' && !isClass(found)) found = await (found as () => unknown)();
  const given = optionsOf(found, name);

  const info = given.info;
  const options: AsyncApiOptions = {
    ...given,
    info: {
      title: values.title ?? info?.title ?? file.replace(/^.*[\\/]/, '').replace(/\.[cm]?js$/, ''),
      version: values.version ?? info?.version ?? '0.0.0',
      ...((values.description ?? info?.description) ? { description: values.description ?? info?.description } : {}),
    },
    servers: { ...given.servers, ...servers },
  };
  try {
    const document = asyncApiDocument(options);
    io.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : toYaml(document));
  } catch (error) {
    io.stderr.write(`ktransport: cannot write the AsyncAPI document: ${describe(error)}\n`);
    return EXIT.failure;
  }
  return EXIT.ok;
}

function isClass(value: unknown): boolean {
  return typeof value === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

function optionsOf(found: unknown, name: string): Partial<AsyncApiOptions> & { services: readonly object[] } {
  if (Array.isArray(found)) return { services: found as object[] };
  if (isClass(found)) return { services: [found as object] };
  if (found !== null && typeof found === 'object' && Array.isArray((found as { services?: unknown }).services)) {
    return found as Partial<AsyncApiOptions> & { services: readonly object[] };
  }
  throw new UsageError(`export "${name}" is not a list of services, an object with "services", nor a function giving one`);
}
