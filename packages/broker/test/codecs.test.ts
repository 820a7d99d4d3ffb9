import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  bytesCodec,
  CodecRegistry,
  ConfigurationError,
  DEAD_LETTER_HEADER,
  decode,
  DecodeError,
  jsonCodec,
  type Message,
  msgpackCodec,
  protobufCodec,
  textCodec,
} from '@ktransport/broker';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { waitFor } from '@ktransport/broker/testing';
import { memoryBroker } from './helpers.js';

describe('codecs', () => {
  it('round-trips values through json, text, bytes and msgpack', () => {
    const value = { id: 7, name: 'sensör', tags: ['a', 'b'], nested: { ok: true } };
    expect(jsonCodec.decode(jsonCodec.encode(value))).toEqual(value);
    expect(new TextDecoder().decode(jsonCodec.encode(value))).toBe(JSON.stringify(value));
    expect(textCodec.decode(textCodec.encode('grüße ✓'))).toBe('grüße ✓');
    const bytes = new Uint8Array([0, 255, 7]);
    expect(bytesCodec.decode(bytesCodec.encode(bytes))).toBe(bytes);
    expect(msgpackCodec.decode(msgpackCodec.encode(value))).toEqual(value);
  });

  it('refuses to decode invalid UTF-8 text and JSON instead of guessing', () => {
    expect(() => textCodec.decode(new Uint8Array([0xff, 0xfe]))).toThrow();
    expect(() => jsonCodec.decode(new TextEncoder().encode('{not json'))).toThrow();
  });

  it('treats an unknown codec name as a configuration error, never a fallback', async () => {
    const registry = new CodecRegistry();
    expect(() => registry.get('yaml')).toThrow(ConfigurationError);
    expect(() => registry.register(jsonCodec as never)).toThrow(/already registered/);
    // @ts-expect-error an unknown codec name does not compile either
    await expect(memoryBroker({ defaultCodec: 'yaml' })).rejects.toThrow(ConfigurationError);
    const broker = await memoryBroker();
    // @ts-expect-error an unknown codec name does not compile either
    await expect(broker.publish('t', {}, { codec: 'yaml' })).rejects.toThrow(ConfigurationError);
    await broker.disconnect();
  });

  it('decodes with the codec named by the content-type header, whatever the subscriber default', async () => {
    const broker = await memoryBroker();
    const got: Message[] = [];
    await broker.subscribe('readings', (m) => void got.push(m), { codec: 'json' });
    await broker.publish('readings', { celsius: 21.5 }, { codec: 'msgpack' });
    await broker.publish('readings', 'plain words', { codec: 'text' });
    await waitFor(
      () => got.length === 2,
      2000,
      () => String(got.length),
    );
    expect(got.map((m) => m.body)).toEqual([{ celsius: 21.5 }, 'plain words']);
    expect(got[0]?.headers['content-type']).toBe('application/msgpack');
    await broker.disconnect();
  });

  it('uses the default codec option for publishing', async () => {
    const broker = await memoryBroker({ defaultCodec: 'text' });
    const got: Message[] = [];
    await broker.subscribe('t', (m) => void got.push(m));
    await broker.publish('t', 'hello');
    await waitFor(
      () => got.length === 1,
      2000,
      () => 'nothing',
    );
    expect(got[0]?.headers['content-type']).toBe('text/plain; charset=utf-8');
    await broker.disconnect();
  });

  it('dead-letters a payload with an unknown content type or undecodable bytes with a DecodeError reason', async () => {
    const broker = await memoryBroker();
    const dead: Message[] = [];
    const handled: unknown[] = [];
    await broker.subscribe('dlq', (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe('in', (m) => void handled.push(m.body), { deadLetter: 'dlq', retry: { attempts: 3, initialDelayMs: 1 } });
    await broker.publish('in', new TextEncoder().encode('<xml/>'), { codec: 'bytes', headers: { 'content-type': 'application/xml' } });
    await broker.publish('in', new TextEncoder().encode('{broken'), { codec: 'bytes', headers: { 'content-type': 'application/json' } });
    await broker.publish('in', { fine: true });
    await waitFor(
      () => dead.length === 2 && handled.length === 1,
      2000,
      () => `${dead.length}/${handled.length}`,
    );
    expect(handled).toEqual([{ fine: true }]);
    expect(dead.map((m) => m.headers[DEAD_LETTER_HEADER.errorType])).toEqual(['DECODE_ERROR', 'DECODE_ERROR']);
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.error]).toMatch(/no codec registered for content type "application\/xml"/);
    expect(dead[1]?.headers[DEAD_LETTER_HEADER.attempts]).toBe('1');
    expect(new TextDecoder().decode(dead[1]?.body as Uint8Array)).toBe('{broken');
    expect(dead[1]?.headers['content-type']).toBe('application/json');
    await broker.disconnect();
  });

  it('never quotes raw foreign bytes or an unbounded content type into the dead-letter reason', async () => {
    const broker = await memoryBroker();
    const dead: Message[] = [];
    await broker.subscribe('dlq', (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe('in', () => undefined, { deadLetter: 'dlq' });
    await broker.publish('in', new Uint8Array([0x01]), { codec: 'bytes', headers: { 'content-type': 'application/json' } });
    await broker.publish('in', new Uint8Array([0x7b]), { codec: 'bytes', headers: { 'content-type': `application/${'z'.repeat(65_500)}` } });
    await waitFor(
      () => dead.length === 2,
      2000,
      () => `${dead.length}`,
    );
    for (const m of dead) {
      const reason = m.headers[DEAD_LETTER_HEADER.error] ?? '';
      expect(invalidTextIndex(reason)).toBe(-1);
      expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(1_024);
    }
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.error]).toMatch(/cannot decode 1-byte payload on in as "application\/json": .*\\u0001/);
    expect(dead[1]?.headers[DEAD_LETTER_HEADER.error]).toMatch(/^no codec registered for content type "application\/z+…"$/);
    await broker.disconnect();
  });

  it('encodes and decodes protobuf messages, choosing the type by content type', async () => {
    const root = protobuf.Root.fromJSON({
      nested: {
        report: {
          nested: {
            Event: { fields: { name: { type: 'string', id: 1 }, content: { type: 'string', id: 2 } } },
            User: { fields: { userId: { type: 'int64', id: 1 }, status: { type: 'string', id: 2 } } },
          },
        },
      },
    });
    const Event = root.lookupType('report.Event');
    const User = root.lookupType('report.User');
    const codecs = new CodecRegistry().register(protobufCodec(Event)).register(protobufCodec(User));
    expect(codecs.get('protobuf:report.Event').contentType).toBe('application/x-protobuf; messageType=report.Event');
    const broker = await memoryBroker({ codecs });
    const got: Message[] = [];
    await broker.subscribe('reports', (m) => void got.push(m));
    await broker.publish('reports', Event.create({ name: 'boot', content: 'ok' }), { codec: 'protobuf:report.Event' });
    await broker.publish('reports', User.create({ userId: 42, status: 'active' }), { codec: 'protobuf:report.User' });
    await waitFor(
      () => got.length === 2,
      2000,
      () => String(got.length),
    );
    expect(Event.toObject(got[0]?.body as protobuf.Message)).toEqual({ name: 'boot', content: 'ok' });
    expect(User.toObject(got[1]?.body as protobuf.Message, { longs: Number })).toEqual({ userId: 42, status: 'active' });
    expect(() => protobufCodec({ encode: Event.encode.bind(Event), decode: Event.decode.bind(Event) })).toThrow(/message type/);
    await broker.disconnect();
  });

  it('reports a body the codec cannot encode as a PublishError', async () => {
    const broker = await memoryBroker();
    await expect(broker.publish('t', 42, { codec: 'text' })).rejects.toThrow(/cannot encode body for t with codec "text"/);
    await expect(broker.publish('t', undefined)).rejects.toThrow(/cannot encode/);
    await broker.disconnect();
  });

  it('decodes a message without content-type with the subscription codec', async () => {
    const registry = new CodecRegistry();
    const seen: unknown[] = [];
    const run = decode(registry, 'msgpack')((m) => void seen.push(m.body));
    const payload = msgpackCodec.encode({ from: 'a device that sends no headers' });
    await run({ topic: 't', body: payload, headers: {} }, { attempt: 1, filter: 't', signal: new AbortController().signal, payload });
    expect(seen).toEqual([{ from: 'a device that sends no headers' }]);
  });

  it('names protobuf codecs and content types by the options when given', () => {
    const Type = protobuf.Root.fromJSON({ nested: { Ping: { fields: { n: { type: 'int32', id: 1 } } } } }).lookupType('Ping');
    const codec = protobufCodec(Type, { name: 'ping', messageType: 'acme.v1.Ping' });
    expect(codec.name).toBe('ping');
    expect(codec.contentType).toBe('application/x-protobuf; messageType=acme.v1.Ping');
    expect(Type.toObject(codec.decode(codec.encode(Type.create({ n: 5 }))) as protobuf.Message)).toEqual({ n: 5 });
  });

  it('rejects an unknown content type with a DecodeError', () => {
    expect(() => new CodecRegistry().forContentType('application/yaml')).toThrow(DecodeError);
    expect(new CodecRegistry().forContentType('application/json; charset=utf-8').name).toBe('json');
  });
});
