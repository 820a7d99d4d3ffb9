/**
 * The member of a group that gets a message, the same on every transport that
 * shares a subscription among local members: by a hash of the message key, so
 * that one key always goes to one member (and its order holds), and in turn
 * for messages without a key.
 */
export class GroupPicker {
  #next = 0;

  /** The member for a message with this key (undefined when there is no member). */
  pick<M>(members: readonly M[], key: string | undefined): M | undefined {
    if (members.length <= 1) return members[0];
    const index = key === undefined ? this.#next++ : keyHash(key);
    return members[index % members.length];
  }
}

/** A stable 32-bit hash of a key (its UTF-16 code units). */
export function keyHash(key: string): number {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) >>> 0;
  return h;
}
