import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';

/** An MQTT broker inside this process (aedes, MQTT 3.1.1), for running with nothing installed. */
export interface EmbeddedMqtt {
  /** `mqtt://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

/** Starts aedes on 127.0.0.1:`port` (0 picks a free port). */
export async function startEmbeddedMqtt(port: number): Promise<EmbeddedMqtt> {
  const aedes = await Aedes.createBroker();
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return {
    url: `mqtt://127.0.0.1:${bound}`,
    close: async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
