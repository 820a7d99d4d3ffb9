/** Characters AsyncAPI accepts in component, channel and operation keys. */
const UNSAFE = /[^A-Za-z0-9_.-]/g;

/** `report/event` -> `report-event`: every character outside `[A-Za-z0-9_.-]` becomes `-`. */
export function safeId(text: string): string {
  const id = text.replace(UNSAFE, '-');
  return id === '' ? '-' : id;
}

/** Hands out ids once each: a second `report-event` becomes `report-event-2`, then `-3`. */
export class Ids {
  readonly #taken = new Set<string>();

  claim(wanted: string): string {
    const base = safeId(wanted);
    let id = base;
    for (let n = 2; this.#taken.has(id); n++) id = `${base}-${n}`;
    this.#taken.add(id);
    return id;
  }
}
