import { describe, expect, it } from 'vitest';
import { ConfigurationError, PublishError } from '@ktransport/broker';
import { assertFilter, assertPublishTopic, TopicTrie } from '@ktransport/broker/transport';

describe('TopicTrie', () => {
  const trie = new TopicTrie<string>();
  for (const f of ['a/b/c', 'a/+/c', 'a/#', '#', '+/b/+', 'a/b', 'x/+']) trie.add(f, f);
  const match = (topic: string): string[] => trie.match(topic).sort();

  it('matches MQTT filters: + one level, # the rest including the parent', () => {
    expect(match('a/b/c')).toEqual(['#', '+/b/+', 'a/#', 'a/+/c', 'a/b/c']);
    expect(match('a/b')).toEqual(['#', 'a/#', 'a/b']);
    expect(match('a')).toEqual(['#', 'a/#']);
    expect(match('x/y')).toEqual(['#', 'x/+']);
    expect(match('x/y/z')).toEqual(['#']);
    expect(match('x//')).toEqual(['#']);
  });

  it('keeps $-topics away from wildcards at the first level', () => {
    const t = new TopicTrie<string>();
    for (const f of ['#', '+/broker', '$SYS/#', '$SYS/broker']) t.add(f, f);
    expect(t.match('$SYS/broker').sort()).toEqual(['$SYS/#', '$SYS/broker']);
  });

  it('removes values and prunes empty branches', () => {
    const t = new TopicTrie<number>();
    t.add('a/+/c', 1);
    t.add('a/+/c', 2);
    t.remove('a/+/c', 1);
    expect(t.match('a/b/c')).toEqual([2]);
    t.remove('a/+/c', 2);
    t.remove('never/added', 3);
    expect(t.match('a/b/c')).toEqual([]);
  });

  it('finds the one matching subscription among 10,000', () => {
    const t = new TopicTrie<number>();
    for (let i = 0; i < 10_000; i++) t.add(`site/${i}/+/temp`, i);
    t.add('site/#', -1);
    expect(t.match('site/4242/sensor-1/temp').sort((a, b) => a - b)).toEqual([-1, 4242]);
  });
});

describe('topic checks', () => {
  it('refuses to publish to empty or wildcard topics', () => {
    expect(() => assertPublishTopic('')).toThrow(PublishError);
    expect(() => assertPublishTopic('a/+/b')).toThrow(/wildcards/);
    expect(() => assertPublishTopic('a/#')).toThrow(PublishError);
    expect(() => assertPublishTopic('a/b')).not.toThrow();
  });

  it('refuses malformed filters', () => {
    expect(() => assertFilter('a/#/b')).toThrow(ConfigurationError);
    expect(() => assertFilter('a/b#')).toThrow(ConfigurationError);
    expect(() => assertFilter('a/b+/c')).toThrow(ConfigurationError);
    expect(() => assertFilter('')).toThrow(ConfigurationError);
    expect(() => assertFilter('a/+/#')).not.toThrow();
  });
});
