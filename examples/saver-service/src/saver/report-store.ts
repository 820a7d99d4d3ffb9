import { inject, injectable } from 'inversify';
import type { Database } from '../db/database.js';
import type { EventReport, UserReport } from '../reports.js';

/** Inversify token of the saver's database. */
export const DATABASE = Symbol.for('saver-service:Database');

/**
 * Writes reports keyed by report id: a redelivered message finds its row and
 * is not stored twice. Returns whether the row is new.
 */
@injectable()
export class ReportStore {
  constructor(@inject(DATABASE) private readonly db: Database) {}

  async saveEvent(report: EventReport): Promise<boolean> {
    const { rowCount } = await this.db.query(
      'INSERT INTO report_events (message_id, event_name, content) VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING',
      [report.reportId, report.eventName, report.content],
    );
    return rowCount === 1;
  }

  async saveUser(report: UserReport): Promise<boolean> {
    const { rowCount } = await this.db.query('INSERT INTO user_reports (message_id, user_id, status) VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING', [
      report.reportId,
      report.userId,
      report.status,
    ]);
    return rowCount === 1;
  }
}
