interface Node<V> {
  /** Named child levels; made when the first one is added. */
  children: Map<string, Node<V>> | undefined;
  /** The `+` and `#` children, kept apart from the named levels: matching looks them up at every level. */
  one: Node<V> | undefined;
  rest: Node<V> | undefined;
  /** Values of the filter ending here: an array, as a node holds one or a few and matching reads them for every message. */
  readonly values: V[];
}

function node<V>(): Node<V> {
  return { children: undefined, one: undefined, rest: undefined, values: [] };
}

function child<V>(parent: Node<V>, level: string): Node<V> | undefined {
  return level === '+' ? parent.one : level === '#' ? parent.rest : parent.children?.get(level);
}

function setChild<V>(parent: Node<V>, level: string, value: Node<V> | undefined): void {
  if (level === '+') parent.one = value;
  else if (level === '#') parent.rest = value;
  else if (value) (parent.children ??= new Map()).set(level, value);
  else parent.children?.delete(level);
}

function empty<V>(n: Node<V>): boolean {
  return n.values.length === 0 && !n.children?.size && !n.one && !n.rest;
}

/**
 * Subscriptions indexed by filter level (MQTT syntax), so that matching a topic
 * walks at most the levels of that topic and the wildcard branches along the
 * way, whatever the number of subscriptions. A value is anything but `null` or
 * `undefined`.
 */
export class TopicTrie<V extends NonNullable<unknown>> {
  readonly #root = node<V>();

  /** Adds a value under a filter (a value may be under several filters, and a filter hold several values). */
  add(filter: string, value: V): void {
    let current = this.#root;
    for (const level of filter.split('/')) {
      let next = child(current, level);
      if (!next) setChild(current, level, (next = node()));
      current = next;
    }
    if (!current.values.includes(value)) current.values.push(value);
  }

  /** Removes a value; prunes branches left empty. */
  remove(filter: string, value: V): void {
    const path: [Node<V>, string][] = [];
    let current: Node<V> | undefined = this.#root;
    for (const level of filter.split('/')) {
      path.push([current, level]);
      current = child(current, level);
      if (!current) return;
    }
    const index = current.values.indexOf(value);
    if (index >= 0) current.values.splice(index, 1);
    for (const [parent, level] of path.reverse()) {
      const below = child(parent, level);
      if (below !== undefined && !empty(below)) break;
      setChild(parent, level, undefined);
    }
  }

  /** Every value whose filter matches `topic`. Wildcards at the first level skip `$`-topics, as in MQTT. */
  match(topic: string): V[] {
    const out: V[] = [];
    TopicTrie.#walk(this.#root, topic.split('/'), 0, topic.startsWith('$'), out);
    return out;
  }

  static #walk<V extends NonNullable<unknown>>(current: Node<V>, levels: string[], i: number, system: boolean, out: V[]): void {
    const wildcardsAllowed = !(system && i === 0);
    if (wildcardsAllowed && current.rest) push(out, current.rest.values);
    const level = levels[i];
    if (level === undefined) {
      push(out, current.values);
      return;
    }
    const exact = current.children?.get(level);
    if (exact) TopicTrie.#walk(exact, levels, i + 1, system, out);
    if (wildcardsAllowed && current.one) TopicTrie.#walk(current.one, levels, i + 1, system, out);
  }
}

function push<V extends NonNullable<unknown>>(out: V[], values: readonly V[]): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value !== undefined) out.push(value);
  }
}
