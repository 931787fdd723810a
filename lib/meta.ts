// Metadata in KumoMTA's sense (`conn_meta` / message meta): named values that must survive a
// JSON round trip, so they can be written next to a queued message and read back unchanged.
// See docs/connection.md.

/** A value that survives JSON unchanged. */
export type MetaValue = null | boolean | number | string | MetaValue[] | { [key: string]: MetaValue };

/** Thrown by set_meta for a value that JSON would change or drop. */
export class MetaValueError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'MetaValueError';
  }
}

/** What a value that JSON cannot hold is, for the error message ("a Date object", "NaN", …). */
function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : `a non-finite number (${v})`;
  if (typeof v !== 'object' || v === null) return `a ${typeof v}`;
  const ctor = (v as { constructor?: { name?: string } }).constructor?.name;
  return ctor ? `a ${ctor} object` : 'an object with a foreign prototype';
}

/**
 * Throws MetaValueError naming the first part of `value` that does not survive JSON: undefined,
 * NaN and ±Infinity, bigint, symbols, functions, cycles, and objects other than plain objects and
 * arrays (Date, Map, Set, Buffer, class instances… which JSON turns into something else).
 * Sparse arrays and non-string (symbol) keys are refused as well.
 */
export function check_meta_value(value: unknown, where: string): asserts value is MetaValue {
  const seen = new Set<object>();
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
    if (typeof v === 'number') {
      if (Number.isFinite(v)) return;
      throw new MetaValueError(`${where}: ${path} is ${describe(v)}, which does not survive JSON`);
    }
    if (typeof v !== 'object') throw new MetaValueError(`${where}: ${path} is ${describe(v)}, which does not survive JSON`);
    if (seen.has(v)) throw new MetaValueError(`${where}: ${path} is a circular reference, which JSON cannot hold`);
    seen.add(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        if (!(i in v)) throw new MetaValueError(`${where}: ${path}[${i}] is a hole in a sparse array, which does not survive JSON`);
        walk(v[i], `${path}[${i}]`);
      }
    } else {
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new MetaValueError(`${where}: ${path} is ${describe(v)}, which does not survive JSON (use plain objects and arrays)`);
      }
      if (Object.getOwnPropertySymbols(v).length) throw new MetaValueError(`${where}: ${path} has symbol keys, which do not survive JSON`);
      for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
    }
    seen.delete(v);
  };
  walk(value, 'the value');
}

/** A deep copy through JSON (the value has been checked). */
function copy<T extends MetaValue>(v: T): T {
  return v === null || typeof v !== 'object' ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** A name → value map whose values survive JSON; reads and writes copy. */
export class MetaStore {
  private values = new Map<string, MetaValue>();

  get(name: string): MetaValue | undefined {
    const v = this.values.get(name);
    return v === undefined ? undefined : copy(v);
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  set(name: string, value: unknown, where = 'set_meta'): MetaValue {
    if (typeof name !== 'string' || name === '') throw new MetaValueError(`${where}: the name must be a non-empty string`);
    const w = `${where}('${name}')`;
    check_meta_value(value, w);
    this.values.set(name, copy(value));
    return copy(value);
  }

  delete(name: string): boolean {
    return this.values.delete(name);
  }

  names(): string[] {
    return [...this.values.keys()];
  }

  /** Every value, as a fresh plain object. */
  all(): Record<string, MetaValue> {
    const out: Record<string, MetaValue> = {};
    for (const [k, v] of this.values) out[k] = copy(v);
    return out;
  }

  /** Copies every value of `other` (a snapshot), keeping the ones this store already has. */
  merge_missing(other: Record<string, MetaValue>): void {
    for (const [k, v] of Object.entries(other)) if (!this.values.has(k)) this.values.set(k, copy(v));
  }
}
