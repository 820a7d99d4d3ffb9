// Compile-time checks of the decorator and server typings: `npm test` typechecks
// this file, and an unused @ts-expect-error fails the build.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BrokerServer, type Message, MemoryBroker, Subscribe, subscriptionsOf } from '@ktransport/broker';

const Reading = z.object({ celsius: z.number() });

class Sensors {
  @Subscribe('readings', { schema: Reading, fromBeginning: true })
  onReading(message: Message<z.infer<typeof Reading>>): void {
    void message.body.celsius;
  }

  // @ts-expect-error the schema's output is not what the method takes
  @Subscribe('readings/text', { schema: Reading })
  onText(message: Message<{ text: string }>): void {
    void message.body.text;
  }
}

describe('typings', () => {
  it('keep transport options on decorated and server subscriptions', () => {
    expect(subscriptionsOf(new Sensors()).map((d) => d.options)).toContainEqual({ schema: Reading, fromBeginning: true });
    const server = new BrokerServer({ broker: new MemoryBroker() });
    server.subscribe('readings', (m) => void m.body.celsius, { schema: Reading, qos: 1 });
    // @ts-expect-error the handler's body type comes from the schema
    server.subscribe('readings/other', (m) => void m.body.missing, { schema: Reading });
  });
});
