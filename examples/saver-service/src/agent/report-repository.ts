import { randomUUID } from 'node:crypto';
import { BROKER, type Broker, Publishes } from '@ktransport/broker';
import { inject, injectable } from 'inversify';
import { EventReport, TOPIC, UserReport } from '../reports.js';

/**
 * The agent's data layer: reports leave through the injected broker. The
 * report id is the idempotency key the saver stores under; a caller that
 * retries with the same report id gets the report stored once.
 */
@injectable()
export class ReportRepository {
  constructor(@inject(BROKER) private readonly broker: Broker) {}

  @Publishes(TOPIC.event, { schema: EventReport, summary: 'An event report was posted (PostReport); keyed by its report id' })
  async postEvent(report: Omit<EventReport, 'reportId'>, reportId: string = randomUUID()): Promise<string> {
    const body: EventReport = { reportId, ...report };
    await this.broker.publish(TOPIC.event, body, { key: reportId });
    return reportId;
  }

  @Publishes(TOPIC.user, { schema: UserReport, summary: 'A user report was posted (PostUserReport); keyed by its user id' })
  async postUser(report: Omit<UserReport, 'reportId'>, reportId: string = randomUUID()): Promise<string> {
    const body: UserReport = { reportId, ...report };
    await this.broker.publish(TOPIC.user, body, { key: String(report.userId) });
    return reportId;
  }
}
