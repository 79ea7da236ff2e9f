// What the typed-array stores (job index, hand-off records, delivery store) share: columns that grow with their key
// map's capacity, and strings (callers) kept as small codes.

export type Column = Float64Array | Uint32Array | Uint16Array | Uint8Array | Int32Array;

/** A copy of `a`, `length` long (not shorter than `a`): the new tail is zero. */
export function widen<T extends Column>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

/** Distinct strings as codes 0, 1, 2… in order of first sight; the typed columns hold the code. */
export class Interner {
  private readonly names: string[] = [];
  private readonly codes = new Map<string, number>();

  code(name: string): number {
    let c = this.codes.get(name);
    if (c === undefined) {
      c = this.names.length;
      this.names.push(name);
      this.codes.set(name, c);
    }
    return c;
  }

  name(code: number): string {
    return this.names[code] as string;
  }
}
