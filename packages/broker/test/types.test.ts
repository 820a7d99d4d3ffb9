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

const Average = z.object({ celsius: z.number(), count: z.number().int().default(1) });

class Averages {
  @Subscribe('average', { schema: Reading, replySchema: Average })
  average(message: Message<z.infer<typeof Reading>>): z.input<typeof Average> {
    return { celsius: message.body.celsius };
  }

  @Subscribe('average/async', { schema: Reading, replySchema: Average })
  async later(message: Message<z.infer<typeof Reading>>): Promise<z.input<typeof Average>> {
    return Promise.resolve({ celsius: message.body.celsius, count: 2 });
  }

  @Subscribe('average/any', { replySchema: Average })
  anyBody(): { celsius: number } {
    return { celsius: 0 };
  }

  @Subscribe('average/none', { schema: Reading, replySchema: Average })
  nothing(): void {}

  // @ts-expect-error the return value is not the reply schema's input
  @Subscribe('average/wrong', { schema: Reading, replySchema: Average })
  wrong(): { celsius: string } {
    return { celsius: 'warm' };
  }

  // @ts-expect-error nor a promise of it, without a body schema either
  @Subscribe('average/wrong-async', { replySchema: Average })
  async wrongLater(): Promise<number> {
    return Promise.resolve(1);
  }

  // @ts-expect-error the body schema still types the message
  @Subscribe('average/wrong-body', { schema: Reading, replySchema: Average })
  wrongBody(message: Message<{ text: string }>): { celsius: number } {
    return { celsius: message.body.text.length };
  }

  // @ts-expect-error a misspelt option beside a reply schema
  @Subscribe('average/misspelt', { replySchema: Average, deadLeter: 'x' })
  misspelt(): void {}
}

describe('typings', () => {
  it('check a @Subscribe method against its replySchema', () => {
    expect(subscriptionsOf(new Averages()).map((d) => d.options.replySchema)).toContain(Average);
  });

  it('keep transport options on decorated and server subscriptions', () => {
    expect(subscriptionsOf(new Sensors()).map((d) => d.options)).toContainEqual({ schema: Reading, fromBeginning: true });
    const server = new BrokerServer({ broker: new MemoryBroker() });
    server.subscribe('readings', (m) => void m.body.celsius, { schema: Reading, qos: 1 });
    // @ts-expect-error the handler's body type comes from the schema
    server.subscribe('readings/other', (m) => void m.body.missing, { schema: Reading });
  });

  it('refuse misspelt and mistyped options, with or without a schema', () => {
    class Mistakes {
      // @ts-expect-error a misspelt core option, with a schema
      @Subscribe('a', { schema: Reading, deadLeter: 'x' })
      one(): void {}

      // @ts-expect-error a misspelt core option, without a schema
      @Subscribe('b', { deadLeter: 'x' })
      two(): void {}

      // @ts-expect-error an option no package declares
      @Subscribe('c', { schema: Reading, whatever: true })
      three(): void {}

      // @ts-expect-error a transport option of the wrong type (MQTT QoS is 0, 1 or 2)
      @Subscribe('d', { qos: 9 })
      four(): void {}

      // @ts-expect-error a codec name no codec has
      @Subscribe('e', { codec: 'yml' })
      five(): void {}

      @Subscribe('f', { schema: Reading, qos: 2, fromBeginning: false, codec: 'msgpack', retry: { attempts: 2 }, deadLetter: 'dlq' })
      six(): void {}

      @Subscribe('g', { codec: 'protobuf:report.Event' })
      seven(): void {}
    }
    const server = new BrokerServer({ broker: new MemoryBroker() });
    // @ts-expect-error a misspelt option on the server too
    server.subscribe('h', () => undefined, { concurency: 2 });
    // @ts-expect-error and with a schema
    server.subscribe('i', () => undefined, { schema: Reading, retries: 2 });
    expect(subscriptionsOf(new Mistakes()).map((d) => d.topic)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
  });
});
