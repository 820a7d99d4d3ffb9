import { describe, expect, it } from 'vitest';
import { headerText, invalidTextIndex, isCertificateError, redactSecrets, redactUrl } from '@ktransport/broker/transport';

describe('header text', () => {
  it('finds the characters MQTT and Mosquitto refuse: controls, unpaired surrogates, noncharacters', () => {
    expect(invalidTextIndex('plain text, é, 温度, 😀')).toBe(-1);
    expect(invalidTextIndex('a\nb')).toBe(1);
    expect(invalidTextIndex('\u0000')).toBe(0);
    expect(invalidTextIndex('ok\u0085')).toBe(2);
    expect(invalidTextIndex('x\ud800')).toBe(1);
    expect(invalidTextIndex('\udc00')).toBe(0);
    expect(invalidTextIndex('\ufffe')).toBe(0);
    expect(invalidTextIndex('\u{10ffff}')).toBe(0);
  });

  it('escapes what a header must not carry and cuts to the byte bound on a character boundary', () => {
    expect(headerText('a\u0001b\ud800')).toBe('a\\u0001b\\ud800');
    expect(headerText('short')).toBe('short');
    const cut = headerText('é'.repeat(1_000), 101);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(101);
    expect(cut.endsWith('…')).toBe(true);
    expect(invalidTextIndex(cut)).toBe(-1);
    const emoji = headerText('😀'.repeat(100), 11);
    expect(emoji).toBe('😀😀…');
    const huge = headerText('\u0001'.repeat(1_000_000));
    expect(Buffer.byteLength(huge)).toBeLessThanOrEqual(1_024);
  });
});

describe('secrets and certificates in errors', () => {
  it('masks the password of a URL and given secrets', () => {
    expect(redactUrl('mqtt://app:s3cret@broker:1883')).toBe('mqtt://app:***@broker:1883');
    expect(redactUrl('mqtt://broker:1883')).toBe('mqtt://broker:1883');
    expect(redactUrl('kafka://u:p@h:1, bad')).not.toContain('u:p');
    expect(redactSecrets('login as app with s3cret failed', ['s3cret'])).toBe('login as app with *** failed');
  });

  it('tells certificate failures apart from other connection failures', () => {
    expect(isCertificateError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).toBe(true);
    expect(isCertificateError(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }) }))).toBe(true);
    expect(isCertificateError(new Error('SSL alert number 42: sslv3 alert bad certificate'))).toBe(true);
    expect(isCertificateError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(false);
  });
});
