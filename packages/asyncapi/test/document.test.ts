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
