import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import * as v from 'valibot';
import { type Codec, CodecRegistry, ConfigurationError, defaultCodecs, type Message, Publishes, Subscribe } from '@ktransport/broker';
import { asyncApiDocument, asyncApiYaml, toYaml } from '@ktransport/asyncapi';
import { Order, OrderRepository, OrderService } from './services.js';
import { parserErrors } from './validate.js';

const info = { title: 'Orders', version: '1.2.0', description: 'Order handling' };

describe('asyncApiDocument', () => {
  const document = asyncApiDocument({ info, services: [OrderService, new OrderRepository()] });

  it('passes the official AsyncAPI parser without errors', async () => {
    expect(await parserErrors(document)).toEqual([]);
    expect(await parserErrors(toYaml(document))).toEqual([]);
  });

  it('has one channel per topic, addressed by the topic, ids from it', () => {
    expect(document.asyncapi).toBe('3.0.0');
    expect(document.info).toEqual(info);
    expect(Object.fromEntries(Object.entries(document.channels).map(([id, channel]) => [id, channel.address]))).toEqual({
      'audit-rest': 'audit/{rest}',
      'orders-created': 'orders/created',
      'orders-dead': 'orders/dead',
      'orders-eu-shipped': 'orders/eu/shipped',
      'orders-level2-shipped': 'orders/{level2}/shipped',
      trees: 'trees',
    });
  });

  it('turns @Subscribe into receive and @Publishes into send operations', () => {
    const operations = Object.fromEntries(Object.entries(document.operations).map(([id, op]) => [id, [op.action, op.channel.$ref]]));
    expect(operations).toEqual({
      'OrderRepository.create': ['send', '#/channels/orders-created'],
      'OrderRepository.ship': ['send', '#/channels/orders-eu-shipped'],
      'OrderRepository.tree': ['send', '#/channels/trees'],
      'OrderService.audit': ['receive', '#/channels/audit-rest'],
      'OrderService.created': ['receive', '#/channels/orders-created'],
      'OrderService.created.deadLetter': ['send', '#/channels/orders-dead'],
      'OrderService.shipped': ['receive', '#/channels/orders-level2-shipped'],
    });
    expect(document.operations['OrderService.created']?.['x-ktransport-group']).toBe('billing');
    expect(document.operations['OrderRepository.create']?.summary).toBe('An order was placed');
    expect(document.operations['OrderRepository.ship']?.description).toBe('Sent by the *EU* warehouse.');
  });

  it('shares one message between a sender and a receiver of the same schema', () => {
    const ref = '#/channels/orders-created/messages/orders-created';
    expect(document.operations['OrderService.created']?.messages).toEqual([{ $ref: ref }]);
    expect(document.operations['OrderRepository.create']?.messages).toEqual([{ $ref: ref }]);
    expect(Object.keys(document.channels['orders-created']?.messages ?? {})).toEqual(['orders-created']);
  });

  it('takes content types from the codecs, json by default', () => {
    const contentTypes = Object.values(document.channels).flatMap((channel) => Object.values(channel.messages).map((m) => m.contentType));
    expect(document.defaultContentType).toBe('application/json');
    expect(document.channels['orders-created']?.messages['orders-created']?.contentType).toBe('application/json');
    expect(document.channels['orders-eu-shipped']?.messages['orders-eu-shipped']?.contentType).toBe('application/msgpack');
    expect(document.channels['audit-rest']?.messages['audit-rest']?.contentType).toBe('text/plain; charset=utf-8');
    expect(contentTypes).toContain(undefined); // the dead-letter copy keeps the original's
  });

  it('writes payloads as draft-07 JSON Schema from zod and from valibot', () => {
    const schemas = document.components?.schemas ?? {};
    expect(schemas['orders-created']).toMatchObject({
      type: 'object',
      required: ['id', 'total', 'lines'],
      properties: { id: { type: 'string', minLength: 1 } },
    });
    expect(schemas['orders-eu-shipped']).toEqual({
      type: 'object',
      properties: { orderId: { type: 'string', minLength: 1 }, carrier: { type: 'string' } },
      required: ['orderId'],
    });
    expect(JSON.stringify(schemas)).not.toContain('$schema');
    // The same valibot schema on the filter and the publisher's topic: one component.
    expect(document.channels['orders-level2-shipped']?.messages['orders-level2-shipped']?.payload).toEqual({ $ref: '#/components/schemas/orders-eu-shipped' });
  });

  it("points a recursive schema's references at its component", () => {
    const tree = document.components?.schemas.trees;
    expect(tree).toMatchObject({ properties: { children: { items: { $ref: '#/components/schemas/trees' } } } });
  });

  it('turns wildcards into channel parameters', () => {
    expect(document.channels['orders-level2-shipped']?.parameters).toEqual({ level2: { description: expect.stringContaining('`+`') as string } });
    expect(Object.keys(document.channels['audit-rest']?.parameters ?? {})).toEqual(['rest']);
    expect(document.channels['audit-rest']?.messages['audit-rest']?.payload).toBeUndefined(); // no schema: any body
  });

  it('describes the dead-letter copy with the headers naming the reason', () => {
    const deadLetter = document.channels['orders-dead']?.messages['dead-letter'];
    expect(Object.keys(deadLetter?.headers?.properties as object)).toContain('x-dead-letter-topic');
    expect(deadLetter?.payload).toBeUndefined();
  });

  it('gives the same bytes whatever the order of the services, and reads a class once', () => {
    const again = asyncApiYaml({ info, services: [new OrderRepository(), OrderService, new OrderService()] });
    expect(again).toBe(toYaml(document));
    expect(parse(again)).toEqual(JSON.parse(JSON.stringify(document)));
  });
});

describe('definitions inside a schema', () => {
  it('become components of their own, references rewritten', async () => {
    const Line = z.object({ sku: z.string() }).meta({ id: 'Line' });
    const Basket = z.object({ first: Line, rest: z.array(Line) });
    class Shop {
      @Publishes('basket', { schema: Basket })
      send(): void {}
    }
    const document = asyncApiDocument({ info, services: [Shop] });
    const schemas = document.components?.schemas ?? {};
    expect(Object.keys(schemas)).toEqual(['basket', 'basket.Line']);
    expect(schemas.basket).toMatchObject({ properties: { first: { $ref: '#/components/schemas/basket.Line' } } });
    expect(await parserErrors(document)).toEqual([]);
  });
});

describe('schemas that cannot give JSON Schema', () => {
  const Plain = v.object({ id: v.string() });
  class Bare {
    @Subscribe('plain', { schema: Plain })
    on(_message: Message<v.InferOutput<typeof Plain>>): void {}
  }

  it('are a ConfigurationError naming the method and the way out', () => {
    expect(() => asyncApiDocument({ info, services: [Bare] })).toThrow(ConfigurationError);
    expect(() => asyncApiDocument({ info, services: [Bare] })).toThrow(/Bare\.on: the valibot schema .*toStandardJsonSchema/);
  });

  it('become the untyped payload {} with untypedPayloads', async () => {
    const document = asyncApiDocument({ info, services: [Bare], untypedPayloads: true });
    expect(document.channels.plain?.messages.plain?.payload).toEqual({});
    expect(document.components).toBeUndefined();
    expect(await parserErrors(document)).toEqual([]);
  });

  it('include a zod type JSON Schema cannot express', () => {
    class Dated {
      @Publishes('dated', { schema: z.object({ at: z.date() }) })
      send(): void {}
    }
    expect(() => asyncApiDocument({ info, services: [Dated] })).toThrow(/Dated\.send: the schema cannot be written as JSON Schema/);
  });
});

describe('codecs', () => {
  const yamlCodec: Codec<unknown> = { name: 'yaml', contentType: 'application/yaml', encode: () => new Uint8Array(), decode: () => null };

  it('come from the registry given, the default codec as configured', () => {
    class Feed {
      @Publishes('feed', { schema: Order })
      send(): void {}
    }
    const codecs = new CodecRegistry([...defaultCodecs(), yamlCodec]);
    const document = asyncApiDocument({ info, services: [Feed], codecs, defaultCodec: 'msgpack' });
    expect(document.defaultContentType).toBe('application/msgpack');
    expect(document.channels.feed?.messages.feed?.contentType).toBe('application/msgpack');
  });

  it('an unknown codec name is a ConfigurationError', () => {
    class Odd {
      @Publishes('odd', { codec: 'protobuf:missing' })
      send(): void {}
    }
    expect(() => asyncApiDocument({ info, services: [Odd] })).toThrow(ConfigurationError);
  });

  it('one schema in two content types on one channel gives two messages', async () => {
    class Both {
      @Publishes('both', { schema: Order })
      json(): void {}
      @Publishes('both', { schema: Order, codec: 'msgpack' })
      packed(): void {}
    }
    const document = asyncApiDocument({ info, services: [Both] });
    expect(Object.keys(document.channels.both?.messages ?? {})).toEqual(['both', 'both-2']);
    expect(document.operations['Both.packed']?.messages).toEqual([{ $ref: '#/channels/both/messages/both-2' }]);
    expect(await parserErrors(document)).toEqual([]);
  });
});

describe('bad topics', () => {
  it('a wildcard inside a level or a # before the end is a ConfigurationError', () => {
    for (const topic of ['a/b+', 'a/#/b', '', 'a/{x}']) {
      class Bad {
        @Subscribe(topic)
        on(): void {}
      }
      expect(() => asyncApiDocument({ info, services: [Bad] }), topic).toThrow(ConfigurationError);
    }
  });
});

describe('request–reply', () => {
  const Ask = z.object({ sku: z.string() });
  const Quote = z.object({ sku: z.string(), cents: z.number().int() });
  class Prices {
    @Subscribe('prices/quote', { schema: Ask, replySchema: Quote, group: 'pricing' })
    quote(message: Message<z.infer<typeof Ask>>): z.input<typeof Quote> {
      return { sku: message.body.sku, cents: 1 };
    }

    @Subscribe('prices/+/quote', { schema: Ask, replySchema: Quote, codec: 'msgpack' })
    regional(message: Message<z.infer<typeof Ask>>): z.input<typeof Quote> {
      return { sku: message.body.sku, cents: 2 };
    }

    @Subscribe('prices/changed', { schema: Ask })
    changed(_message: Message<z.infer<typeof Ask>>): void {}
  }
  class PriceClient {
    @Publishes('prices/quote', { schema: Ask, replySchema: Quote, summary: 'Asks for a quote' })
    ask(): void {}

    @Publishes('prices/quote', { schema: Ask })
    nudge(): void {}
  }
  const document = asyncApiDocument({ info, services: [Prices, PriceClient] });
  const reply = {
    address: { location: '$message.header#/reply-to' },
    channel: { $ref: '#/channels/prices-quote-reply' },
    messages: [{ $ref: '#/channels/prices-quote-reply/messages/prices-quote-reply' }],
  };

  it('passes the official AsyncAPI parser without errors', async () => {
    expect(await parserErrors(document)).toEqual([]);
    expect(await parserErrors(toYaml(document))).toEqual([]);
  });

  it('gives a receive operation with replySchema a reply to the address in reply-to', () => {
    expect(document.operations['Prices.quote']?.reply).toEqual(reply);
    expect(document.operations['Prices.quote']?.['x-ktransport-group']).toBe('pricing');
    expect(document.operations['Prices.changed']?.reply).toBeUndefined();
    expect(document.operations['PriceClient.nudge']?.reply).toBeUndefined();
  });

  it('gives a send operation with replySchema the same reply', () => {
    expect(document.operations['PriceClient.ask']?.reply).toEqual(reply);
    expect(document.operations['PriceClient.ask']?.summary).toBe('Asks for a quote');
  });

  it('puts replies on a channel whose address is dynamic (null), one per requested topic', () => {
    expect(Object.keys(document.channels)).toEqual([
      'prices-changed',
      'prices-level2-quote',
      'prices-level2-quote-reply',
      'prices-quote',
      'prices-quote-reply',
    ]);
    const channel = document.channels['prices-quote-reply'];
    expect(channel?.address).toBeNull();
    expect(channel?.description).toContain('`reply-to`');
    expect(channel?.parameters).toBeUndefined();
    expect(toYaml(document)).toContain('address: null');
  });

  it('describes the reply: payload from replySchema, content type from the codec, correlation id and error headers', () => {
    const message = document.channels['prices-quote-reply']?.messages['prices-quote-reply'];
    expect(message?.contentType).toBe('application/json');
    expect(message?.payload).toEqual({ $ref: '#/components/schemas/prices-quote-reply' });
    expect(document.components?.schemas['prices-quote-reply']).toMatchObject({
      type: 'object',
      required: ['sku', 'cents'],
      properties: { cents: { type: 'integer' } },
    });
    expect(message?.correlationId).toEqual({ location: '$message.header#/correlation-id' });
    expect(Object.keys(message?.headers?.properties as object)).toEqual(['correlation-id', 'x-reply-error', 'x-reply-error-type']);
    expect(message?.description).toMatch(/error reply: an empty body/);
    const regional = document.channels['prices-level2-quote-reply']?.messages['prices-level2-quote-reply'];
    expect(regional?.contentType).toBe('application/msgpack');
    // The same reply schema object: one component.
    expect(regional?.payload).toEqual({ $ref: '#/components/schemas/prices-quote-reply' });
  });

  it('documents reply-to and correlation-id on the request, apart from the same body sent without a reply', () => {
    const messages = document.channels['prices-quote']?.messages ?? {};
    expect(Object.keys(messages)).toEqual(['prices-quote', 'prices-quote-2']);
    const ref = '#/channels/prices-quote/messages/prices-quote';
    expect(document.operations['Prices.quote']?.messages).toEqual([{ $ref: ref }]);
    expect(document.operations['PriceClient.ask']?.messages).toEqual([{ $ref: ref }]);
    expect(document.operations['PriceClient.nudge']?.messages).toEqual([{ $ref: '#/channels/prices-quote/messages/prices-quote-2' }]);
    expect(Object.keys(messages['prices-quote']?.headers?.properties as object)).toEqual(['correlation-id', 'reply-to']);
    expect(messages['prices-quote']?.correlationId).toEqual({ location: '$message.header#/correlation-id' });
    expect(messages['prices-quote-2']?.headers).toBeUndefined();
    expect(messages['prices-quote-2']?.correlationId).toBeUndefined();
  });

  it('does not take a reply channel id another topic already has', async () => {
    class Clash {
      @Subscribe('a', { replySchema: Quote })
      a(): void {}
      @Subscribe('a-reply')
      b(): void {}
    }
    const clash = asyncApiDocument({ info, services: [Clash] });
    expect(clash.channels['a-reply']?.address).toBe('a-reply');
    expect(clash.channels['a-reply-2']?.address).toBeNull();
    expect(clash.operations['Clash.a']?.reply?.channel).toEqual({ $ref: '#/channels/a-reply-2' });
    expect(await parserErrors(clash)).toEqual([]);
  });

  it('names the method when the reply schema cannot give JSON Schema', () => {
    class Dated {
      @Subscribe('when', { replySchema: z.object({ at: z.date() }) })
      when(): void {}
    }
    expect(() => asyncApiDocument({ info, services: [Dated] })).toThrow(/Dated\.when: the schema cannot be written as JSON Schema/);
  });
});
