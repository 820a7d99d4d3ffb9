interface Node<V> {
  readonly children: Map<string, Node<V>>;
  readonly values: Set<V>;
}

function node<V>(): Node<V> {
  return { children: new Map(), values: new Set() };
}

/**
 * Subscriptions indexed by filter level (MQTT syntax), so that matching a topic
 * walks at most the levels of that topic and the wildcard branches along the
 * way, whatever the number of subscriptions.
 */
export class TopicTrie<V> {
  readonly #root = node<V>();

  add(filter: string, value: V): void {
    let current = this.#root;
    for (const level of filter.split('/')) {
      let next = current.children.get(level);
      if (!next) current.children.set(level, (next = node()));
      current = next;
    }
    current.values.add(value);
  }

  /** Removes a value; prunes branches left empty. */
  remove(filter: string, value: V): void {
    const path: [Node<V>, string][] = [];
    let current: Node<V> | undefined = this.#root;
    for (const level of filter.split('/')) {
      path.push([current, level]);
      current = current.children.get(level);
      if (!current) return;
    }
    current.values.delete(value);
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i]!;
      const child = parent.children.get(level)!;
      if (child.values.size > 0 || child.children.size > 0) break;
      parent.children.delete(level);
    }
  }

  /** Every value whose filter matches `topic`. Wildcards at the first level skip `$`-topics, as in MQTT. */
  match(topic: string): V[] {
    const out: V[] = [];
    const levels = topic.split('/');
    const system = topic.startsWith('$');
    const walk = (current: Node<V>, i: number): void => {
      const wildcardsAllowed = !(system && i === 0);
      if (wildcardsAllowed) {
        const rest = current.children.get('#');
        if (rest) for (const v of rest.values) out.push(v);
      }
      if (i === levels.length) {
        for (const v of current.values) out.push(v);
        return;
      }
      const exact = current.children.get(levels[i]!);
      if (exact) walk(exact, i + 1);
      const one = wildcardsAllowed ? current.children.get('+') : undefined;
      if (one) walk(one, i + 1);
    };
    walk(this.#root, 0);
    return out;
  }
}
