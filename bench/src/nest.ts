import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ClientKafka, ClientProxy, MicroserviceOptions } from '@nestjs/microservices';
import { ClientProxyFactory, EventPattern, MqttRecordBuilder, ServerKafka, Transport } from '@nestjs/microservices';
import kafkajs, { type Consumer } from 'kafkajs';
import { type Body, bodyFactory, measure, Receiver, type WorkerConfig, type WorkerResult } from './common.js';
import { createTopic, FETCH_WAIT_MS } from './kafka-util.js';

const { logLevel, Partitioners } = kafkajs;

/** The same options in the shape NestJS declares them. */
function nestOptions(clientId: string) {
  return { protocolVersion: 5, clientId, clean: true, keepalive: 60, connectTimeout: 10_000, reconnectPeriod: 1_000, resubscribe: true } as const;
}

/** A NestJS module whose one controller hands every event on `topic` to `receiver`. */
function sinkModule(topic: string, receiver: Receiver): new () => object {
  @Controller()
  class SinkController {
    @EventPattern(topic)
    handle(data: unknown): void {
      receiver.record(data as Body);
    }
  }
  @Module({ controllers: [SinkController] })
  class SinkModule {}
  return SinkModule;
}

/** NestJS microservices: ClientProxy.emit on one side, @EventPattern on the other. */
export async function mqttNestjs(config: WorkerConfig): Promise<WorkerResult> {
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const SinkModule = sinkModule(config.topic, receiver);
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(SinkModule, {
    transport: Transport.MQTT,
    options: { ...nestOptions(`bench-nest-sub-${process.pid}`), url: config.mqttUrl, subscribeOptions: { qos } },
    logger: false,
  });
  await app.listen();
  const client: ClientProxy = ClientProxyFactory.create({
    transport: Transport.MQTT,
    options: { ...nestOptions(`bench-nest-pub-${process.pid}`), url: config.mqttUrl },
  });
  await client.connect();
  const body = bodyFactory(config.bytes);
  try {
    return await measure(config, receiver, (seq, done) => {
      const data = qos > 0 ? new MqttRecordBuilder(body(seq)).setQoS(qos).build() : body(seq);
      client.emit(config.topic, data).subscribe({ complete: () => done(), error: (error: unknown) => done(error) });
    });
  } finally {
    await client.close();
    await app.close();
  }
}

/** NestJS microservices over Kafka: ClientKafka.emit and a ServerKafka @EventPattern handler. */
export async function kafkaNestjs(config: WorkerConfig): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const receiver = new Receiver();
  const SinkModule = sinkModule(config.topic, receiver);
  let onJoin!: () => void;
  const joinedGroup = new Promise<void>((resolve) => (onJoin = resolve));
  // The consumer is made inside listen(): hook its group join as soon as it exists, before it connects.
  class Strategy extends ServerKafka {
    override registerConsumerEventListeners(): void {
      super.registerConsumerEventListeners();
      const consumer = (this as unknown as { consumer: Consumer }).consumer;
      const remove = consumer.on(consumer.events.GROUP_JOIN, () => {
        remove();
        onJoin();
      });
    }
  }
  const strategy = new Strategy({
    client: { brokers: [config.kafkaBrokers], clientId: `bench-nest-sub-${process.pid}`, logLevel: logLevel.NOTHING },
    consumer: { groupId: `bench-nest-${config.topic}`, maxWaitTimeInMs: FETCH_WAIT_MS },
    subscribe: { fromBeginning: true },
  });
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(SinkModule, { strategy, logger: false });
  await Promise.all([app.listen(), joinedGroup]);
  const client = ClientProxyFactory.create({
    transport: Transport.KAFKA,
    options: {
      client: { brokers: [config.kafkaBrokers], clientId: `bench-nest-pub-${process.pid}`, logLevel: logLevel.NOTHING },
      // NestJS' defaults otherwise (kafkajs' producer, acks -1 per send): what a NestJS service gets.
      producer: { createPartitioner: Partitioners.DefaultPartitioner },
      producerOnlyMode: true,
    },
  }) as ClientKafka;
  await client.connect();
  const body = bodyFactory(config.bytes);
  try {
    return await measure(config, receiver, (seq, done) => {
      client.emit(config.topic, body(seq)).subscribe({ complete: () => done(), error: (error: unknown) => done(error) });
    });
  } finally {
    await client.close();
    await app.close();
  }
}
