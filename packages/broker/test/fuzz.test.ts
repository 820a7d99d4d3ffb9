import { describe, expect, it } from 'vitest';
import { fuzz, PRINTABLE_RANGES } from '@ktransport/broker/testing';
import { invalidTextIndex } from '@ktransport/broker/transport';

describe("fuzz: the seeded input of the transports' fuzz tests", () => {
  it('gives the same sequence for the same seed, and another for another seed', () => {
    const draw = (seed: number): unknown[] => {
      const f = fuzz(seed);
      return [f.random(), f.int(1000), f.pick(['a', 'b', 'c']), [...f.bytes(8)], f.text(16)];
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(fuzz(7).seed).toBe(7);
  });

  it('keeps its values in range: int below max, bytes 0-255, text from the ranges given', () => {
    const f = fuzz(1);
    for (let i = 0; i < 1_000; i++) {
      const n = f.int(10);
      expect(n >= 0 && n < 10 && Number.isInteger(n)).toBe(true);
    }
    expect(f.bytes(100).every((b) => b >= 0 && b <= 255)).toBe(true);
    const printable = f.text(2_000);
    expect(invalidTextIndex(printable)).toBe(-1);
    for (const c of printable) {
      const code = c.codePointAt(0) ?? -1;
      expect(PRINTABLE_RANGES.some(([low, high]) => code >= low && code <= high)).toBe(true);
    }
    expect(f.text(50, [[0x41, 0x42]])).toMatch(/^[AB]{50}$/);
  });

  it('refuses to pick from nothing', () => {
    expect(() => fuzz(1).pick([])).toThrow(RangeError);
  });
});
