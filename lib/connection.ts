// Qpsmtpd::Connection: what is known about the client, in qpsmtpd's accessor style
// (`x()` reads, `x(v)` sets and returns v, an explicit undefined is stored too).
import ipaddr from 'ipaddr.js';

const START_FIELDS = [
  'remote_host',
  'remote_ip',
  'remote_info',
  'remote_port',
  'local_ip',
  'local_port',
  'relay_client',
] as const;

type StartField = (typeof START_FIELDS)[number];
type Field = StartField | 'hello' | 'hello_host';
export type StartArgs = Partial<Record<StartField, unknown>>;

/** Strips the IPv4-mapped prefix (`::ffff:1.2.3.4` -> `1.2.3.4`) as qpsmtpd's lrpip does. */
export function normalize_ip(ip: string): string {
  if (ipaddr.isValid(ip)) {
    const parsed = ipaddr.parse(ip);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
      return (parsed as ipaddr.IPv6).toIPv4Address().toString();
    }
  }
  return ip;
}

export class Connection {
  protected fields: Partial<Record<Field, unknown>> = {};
  protected _notes: Record<string, unknown> | undefined = {};

  /** qpsmtpd's `start`: only truthy values are taken; unknown keys are ignored. */
  start(args: StartArgs = {}): this {
    for (const key of START_FIELDS) {
      const value = args[key];
      if (value) this.set(key, value);
    }
    return this;
  }

  remote_host(...v: [string?]): string | undefined {
    return this.acc('remote_host', v) as string | undefined;
  }
  remote_ip(...v: [string?]): string | undefined {
    return this.acc('remote_ip', v) as string | undefined;
  }
  remote_info(...v: [string?]): string | undefined {
    return this.acc('remote_info', v) as string | undefined;
  }
  remote_port(...v: [(number | string)?]): number | string | undefined {
    return this.acc('remote_port', v) as number | string | undefined;
  }
  local_ip(...v: [string?]): string | undefined {
    return this.acc('local_ip', v) as string | undefined;
  }
  local_port(...v: [(number | string)?]): number | string | undefined {
    return this.acc('local_port', v) as number | string | undefined;
  }
  relay_client(...v: [unknown?]): unknown {
    return this.acc('relay_client', v);
  }
  /** 'helo' or 'ehlo' (qpsmtpd-ts also 'lhlo'); set only after the helo/ehlo hooks accepted. */
  hello(...v: [string?]): string | undefined {
    return this.acc('hello', v) as string | undefined;
  }
  hello_host(...v: [string?]): string | undefined {
    return this.acc('hello_host', v) as string | undefined;
  }

  notes(key: string): any;
  notes(key: string, value: unknown): any;
  notes(key: string, ...value: unknown[]): any {
    if (!this._notes) this._notes = {};
    if (value.length) this._notes[key] = value[0];
    return this._notes[key];
  }

  /** The notes object itself (shared with clones). */
  all_notes(): Record<string, unknown> {
    if (!this._notes) this._notes = {};
    return this._notes;
  }

  /**
   * A new Connection with the truthy start fields and the same notes object; hello and
   * hello_host are not copied. The original is reset unless `no_reset` is given (qpsmtpd's
   * STARTTLS path).
   */
  clone(opts: { no_reset?: boolean } = {}): Connection {
    const copy = new (this.constructor as new () => Connection)();
    for (const key of START_FIELDS) {
      const value = this.fields[key];
      if (value) copy.set(key, value);
    }
    copy._notes = this.all_notes();
    copy.copy_extra_from(this);
    if (!opts.no_reset) this.reset();
    return copy;
  }

  /** qpsmtpd's `reset`: drops the notes. */
  reset(): void {
    this._notes = undefined;
  }

  /** Hook for subclasses that carry more state across a clone. */
  protected copy_extra_from(_other: Connection): void {}

  private set(key: Field, value: unknown): void {
    this.fields[key] = key === 'remote_ip' && typeof value === 'string' ? normalize_ip(value) : value;
  }

  private acc(key: Field, v: unknown[]): unknown {
    if (v.length) this.set(key, v[0]);
    return this.fields[key];
  }
}
