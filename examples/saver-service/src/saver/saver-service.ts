import { type Message, Subscribe } from '@ktransport/broker';
import { inject, injectable } from 'inversify';
import { EventReport, TOPIC, UserReport } from '../reports.js';
import { ReportStore } from './report-store.js';

/** What the saver did, for its exit line and the demo summary. */
@injectable()
export class SaverStats {
  stored = 0;
  duplicates = 0;
}

/** How both topics are consumed; the group comes from configuration (the saver's BrokerServer). */
const delivery = { retry: { attempts: 5, initialDelayMs: 100 }, deadLetter: TOPIC.dead, concurrency: 8 };

/** Subscribes to the report topics and stores every valid report once. */
@injectable()
export class SaverService {
  constructor(
    @inject(ReportStore) private readonly store: ReportStore,
    @inject(SaverStats) private readonly stats: SaverStats,
  ) {}

  @Subscribe(TOPIC.event, { ...delivery, schema: EventReport })
  async onEvent(message: Message<EventReport>): Promise<void> {
    this.count(await this.store.saveEvent(message.body));
  }

  @Subscribe(TOPIC.user, { ...delivery, schema: UserReport })
  async onUser(message: Message<UserReport>): Promise<void> {
    this.count(await this.store.saveUser(message.body));
  }

  private count(stored: boolean): void {
    if (stored) this.stats.stored++;
    else this.stats.duplicates++;
  }
}
