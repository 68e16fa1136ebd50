/**
 * A small memo of computed values by a list of keys compared by identity (`SameValueZero`), such
 * as a cached ConfigMap's strings: a string's hash is computed once by the engine, so looking up a
 * 50 KB table text costs no more than a short key. The least recently used entry goes first.
 */
export class Memo<V> {
  private readonly entries = new Map<string, { readonly keys: readonly unknown[]; value: V }[]>();
  private readonly order: { readonly bucket: string; readonly keys: readonly unknown[] }[] = [];

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be a positive integer, not ${capacity}`);
  }

  /** The value for `keys`, computed by `compute` the first time. */
  get(keys: readonly unknown[], compute: () => V): V {
    const bucket = keys.map((key) => (typeof key === 'string' ? key.length : typeof key)).join();
    const list = this.entries.get(bucket) ?? [];
    const found = list.find((entry) => sameKeys(entry.keys, keys));
    if (found) {
      this.touch(bucket, found.keys);
      return found.value;
    }
    const value = compute();
    list.push({ keys, value });
    this.entries.set(bucket, list);
    this.order.push({ bucket, keys });
    if (this.order.length > this.capacity) this.evict();
    return value;
  }

  /** How many values it holds. */
  get size(): number {
    return this.order.length;
  }

  private touch(bucket: string, keys: readonly unknown[]): void {
    const index = this.order.findIndex((entry) => entry.bucket === bucket && entry.keys === keys);
    const [entry] = this.order.splice(index, 1);
    if (entry) this.order.push(entry);
  }

  private evict(): void {
    const oldest = this.order.shift();
    if (!oldest) return;
    const list = (this.entries.get(oldest.bucket) ?? []).filter(
      (entry) => entry.keys !== oldest.keys,
    );
    if (list.length === 0) this.entries.delete(oldest.bucket);
    else this.entries.set(oldest.bucket, list);
  }
}

function sameKeys(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((key, index) => Object.is(key, b[index]));
}
