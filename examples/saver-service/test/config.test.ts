import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('configuration', () => {
  it('uses embedded defaults when nothing is configured', () => {
    const config = loadConfig({ env: {} });
    expect(config.broker.url).toBeUndefined();
    expect(config.database.url).toBe('pglite:.data/saver-db');
    expect(config.grpc.address).toBe('127.0.0.1:50051');
    expect(config.group).toBe('saver');
  });

  it('reads the config file and lets environment variables override it', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'kt-config-')), 'config.json');
    writeFileSync(
      file,
      JSON.stringify({ broker: { url: 'mqtt://10.0.0.1:1883' }, database: { url: 'postgres://db/reports' }, grpc: { address: '0.0.0.0:6000' } }),
    );
    const config = loadConfig({
      file,
      env: { KT_BROKER_URL: 'kafka://127.0.0.1:9092', KT_MQTT_PROTOCOL_VERSION: '4', KT_INSTANCE: 'saver-2', KT_GROUP: 'savers-eu' },
    });
    expect(config.broker).toEqual({ url: 'kafka://127.0.0.1:9092', protocolVersion: 4, embeddedPort: 1885 });
    expect(config.database.url).toBe('postgres://db/reports');
    expect(config.grpc.address).toBe('0.0.0.0:6000');
    expect(config.instance).toBe('saver-2');
    expect(config.group).toBe('savers-eu');
  });

  it('refuses wrong values at start with every reason spelled out', () => {
    const load = (): unknown =>
      loadConfig({ env: { KT_BROKER_URL: 'stomp://rabbit', KT_DATABASE_URL: 'mysql://x', KT_GRPC_ADDRESS: 'nowhere', KT_MQTT_PROTOCOL_VERSION: '3' } });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/broker\.url: must be mqtt:\/\/.*database\.url: must be postgres/);
    expect(load).toThrow(/grpc\.address: must be host:port/);
    expect(load).toThrow(/broker\.protocolVersion/);
    expect(() => loadConfig({ file: '/nonexistent/config.json', env: {} })).toThrow(/cannot read \/nonexistent\/config.json/);
  });
});
