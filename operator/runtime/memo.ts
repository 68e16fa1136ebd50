/**
 * A small memo of computed values by a list of keys compared with `Object.is`, such as a cached
 * ConfigMap's strings: two different strings of different lengths differ at once, and the same
 * string from one cache is the same value, so even 50 KB table texts are cheap keys. The least
 * recently used entry goes first.
 */
export class Memo<V> {
  /** Entries from the least to the most recently used. */
  private readonly entries: { readonly keys: readonly unknown[]; readonly value: V }[] = [];

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be a positive integer, not ${capacity}`);
  }

  /** The value for `keys`, computed by `compute` the first time. */
  get(keys: readonly unknown[], compute: () => V): V {
    const index = this.entries.findIndex((entry) => sameKeys(entry.keys, keys));
    const [found] = index < 0 ? [] : this.entries.splice(index, 1);
    const entry = found ?? { keys, value: compute() };
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.shift();
    return entry.value;
  }

  /** How many values it holds. */
  get size(): number {
    return this.entries.length;
  }
}

function sameKeys(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((key, index) => Object.is(key, b[index]));
}
