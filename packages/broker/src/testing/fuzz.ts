/** A range of Unicode code points, both ends included. */
export type CodePointRange = readonly [low: number, high: number];

/** Printable text every wire accepts: ASCII, Latin, Greek, CJK and astral emoji (surrogate pairs); no controls, surrogates or noncharacters. */
export const PRINTABLE_RANGES: readonly CodePointRange[] = [
  [0x20, 0x7e],
  [0xa0, 0x2ff],
  [0x370, 0x3ff],
  [0x4e00, 0x9fff],
  [0x1f600, 0x1f64f],
];

/** Seeded random input for a transport's fuzz test: the same seed gives the same sequence, so a failing run can be replayed. Its functions may be taken apart (`const { int, text } = fuzz(seed)`). */
export interface Fuzz {
  /** The seed this sequence started from; name it when a test fails. */
  readonly seed: number;
  /** The next number in [0, 1). */
  readonly random: () => number;
  /** A whole number in [0, max). */
  readonly int: (max: number) => number;
  /** One of `items` (which must not be empty). */
  readonly pick: <T>(items: readonly T[]) => T;
  /** `length` random bytes. */
  readonly bytes: (length: number) => Buffer;
  /** `length` code points, each from one of `ranges` chosen at random. */
  readonly text: (length: number, ranges?: readonly CodePointRange[]) => string;
}

/** The seed of this run: `KTRANSPORT_FUZZ_SEED` when set (to replay a failure), otherwise taken from the clock. */
export function fuzzSeed(): number {
  return Number(process.env.KTRANSPORT_FUZZ_SEED ?? Date.now() % 2 ** 31);
}

/** Random input from `seed` (mulberry32: small, fast and good enough for test input, not for secrets). */
export function fuzz(seed: number): Fuzz {
  let state = seed >>> 0;
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (max: number): number => Math.floor(random() * max);
  const pick = <T>(items: readonly T[]): T => {
    if (items.length === 0) throw new RangeError('fuzz: nothing to pick from');
    return items[int(items.length)] as T;
  };
  return {
    seed,
    random,
    int,
    pick,
    bytes: (length) => Buffer.from(Array.from({ length }, () => int(256))),
    text: (length, ranges = PRINTABLE_RANGES) => {
      let out = '';
      for (let i = 0; i < length; i++) {
        const [low, high] = pick(ranges);
        out += String.fromCodePoint(low + int(high - low + 1));
      }
      return out;
    },
  };
}
