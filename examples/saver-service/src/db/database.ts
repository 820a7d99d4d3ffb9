import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

/** The little the saver needs from a SQL database; PostgreSQL and embedded PGlite both fit. */
export interface Database {
  /** `postgres` or `pglite`, for logs and the demo summary. */
  readonly kind: string;
  query<R extends object = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: R[]; rowCount: number }>;
  /** Runs several statements without parameters in one round trip (migrations). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

const MIGRATIONS = fileURLToPath(new URL('../../migrations/', import.meta.url));

/**
 * Opens `postgres://...` with a connection pool, or `pglite:<dir>` (`pglite:memory`
 * for a throwaway one) as an embedded PostgreSQL, and applies the migrations.
 */
export async function openDatabase(url: string): Promise<Database> {
  const db = url.startsWith('pglite:') ? await openPglite(url.slice('pglite:'.length)) : openPostgres(url);
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return db;
}

function openPostgres(url: string): Database {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  pool.on('error', () => undefined); // an idle client lost its connection; the next query reconnects
  return {
    kind: 'postgres',
    async query<R extends object>(sql: string, params: unknown[] = []) {
      const result = await pool.query(sql, params);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    exec: async (sql) => void (await pool.query(sql)),
    close: () => pool.end(),
  };
}

async function openPglite(dir: string): Promise<Database> {
  const db = dir === 'memory' || dir === '' ? new PGlite() : new PGlite(dir);
  await db.waitReady;
  return {
    kind: 'pglite',
    async query<R extends object>(sql: string, params: unknown[] = []) {
      const result = await db.query<R>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
    exec: async (sql) => void (await db.exec(sql)),
    close: () => db.close(),
  };
}

/**
 * Applies every migration not applied yet, in file-name order, each in one
 * transaction under an advisory lock so that two savers starting together do
 * not race. Migrations are written to be safe to repeat.
 */
async function migrate(db: Database): Promise<void> {
  await db.query('CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
  const applied = new Set((await db.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  for (const file of (await readdir(MIGRATIONS)).filter((f) => f.endsWith('.sql')).sort()) {
    if (applied.has(file)) continue;
    const sql = await readFile(MIGRATIONS + file, 'utf8');
    const version = file.replaceAll("'", "''");
    await db.exec(`BEGIN;
SELECT pg_advisory_xact_lock(7202611);
${sql};
INSERT INTO schema_migrations (version) VALUES ('${version}') ON CONFLICT DO NOTHING;
COMMIT;`);
  }
}
