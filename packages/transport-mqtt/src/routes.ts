import { GroupPicker, TopicTrie } from '@ktransport/broker/transport';
import type { Member } from './member.js';
import type { QoS } from './options.js';

/**
 * One MQTT subscription of the connection (`filter`, or `$share/{group}/{filter}`)
 * and the local subscribers (`subscribe()` calls) it feeds. Without a group every
 * member gets every message; in a group one member does, picked by the core's
 * GroupPicker as on every transport: by a hash of the key (so that per-key order
 * holds), in turn for messages without a key.
 */
export class Route {
  readonly members: Member[] = [];
  /** This route alone, as `RouteTable.resolve` returns it (no array per message). */
  readonly alone: readonly Route[] = [this];
  qos: QoS;
  /** Settles when the broker answered the latest SUBSCRIBE for this route. */
  ready: Promise<void> = Promise.resolve();
  readonly #picker = new GroupPicker();

  constructor(
    /** MQTT 5 subscription identifier: tells which subscription a PUBLISH was sent for. */
    readonly id: number,
    readonly filter: string,
    readonly group: string | undefined,
    qos: QoS,
    /** The filter as sent to the broker: `$share/{group}/{filter}` for a shared group, else the filter. */
    readonly mqttFilter: string,
  ) {
    this.qos = qos;
  }

  /** Members that get a message with this key (members leave the list when they unsubscribe). */
  targets(key: string | undefined): readonly Member[] {
    if (this.group === undefined) return this.members;
    const member = this.#picker.pick(this.members, key);
    return member === undefined ? [] : [member];
  }

  /** The highest QoS any member asked for: what the MQTT subscription must use. */
  wantedQos(): QoS {
    return this.members.reduce<QoS>((max, m) => (m.qos > max ? m.qos : max), 0);
  }
}

/**
 * The routes of one connection. A PUBLISH names the subscriptions it was sent
 * for by subscription identifier (MQTT 5, one copy per matching subscription);
 * without identifiers (MQTT 3.1.1: one copy per session) the topic is matched
 * against every filter through a topic trie, shared subscriptions by their plain filter.
 */
export class RouteTable {
  readonly #byFilter = new Map<string, Route>();
  readonly #byId = new Map<number, Route>();
  #trie = new TopicTrie<Route>();
  #nextId = 1;

  constructor(private readonly shared: boolean) {}

  get(filter: string, group: string | undefined): Route | undefined {
    return this.#byFilter.get(key(filter, group));
  }

  add(filter: string, group: string | undefined, qos: QoS): Route {
    const mqttFilter = group === undefined || !this.shared ? filter : `$share/${group}/${filter}`;
    const route = new Route(this.#nextId++, filter, group, qos, mqttFilter);
    this.#byFilter.set(key(filter, group), route);
    this.#byId.set(route.id, route);
    this.#trie.add(filter, route);
    return route;
  }

  remove(route: Route): void {
    if (this.#byFilter.get(key(route.filter, route.group)) !== route) return;
    this.#byFilter.delete(key(route.filter, route.group));
    this.#byId.delete(route.id);
    this.#trie.remove(route.filter, route);
  }

  /** The routes a received message belongs to. */
  resolve(topic: string, ids: number | number[] | undefined): readonly Route[] {
    if (typeof ids === 'number' && this.shared) {
      const route = this.#byId.get(ids);
      if (route) return route.alone;
    }
    if (ids !== undefined) {
      const known = (Array.isArray(ids) ? ids : [ids]).map((id) => this.#byId.get(id)).filter((r): r is Route => r !== undefined);
      // Unknown identifiers come from a previous process's session: match the topic instead.
      // Routes that share one MQTT subscription (groups without $share) share its identifier.
      if (known.length > 0) return this.shared ? known : [...this.#byFilter.values()].filter((r) => known.some((k) => k.mqttFilter === r.mqttFilter));
    }
    return this.#trie.match(topic);
  }

  /** Whether another route still needs the MQTT subscription `mqttFilter`. */
  inUse(mqttFilter: string): boolean {
    for (const route of this.#byFilter.values()) if (route.mqttFilter === mqttFilter) return true;
    return false;
  }

  clear(): void {
    this.#byFilter.clear();
    this.#byId.clear();
    this.#trie = new TopicTrie<Route>();
  }
}

function key(filter: string, group: string | undefined): string {
  return group === undefined ? filter : `$share/${group}/${filter}`;
}

/** Whether `topic` matches `filter` (MQTT rules, `$`-topics excluded from leading wildcards). */
export function matches(filter: string, topic: string): boolean {
  const trie = new TopicTrie<true>();
  trie.add(filter, true);
  return trie.match(topic).length > 0;
}
