// Qpsmtpd::Transaction: envelope, notes, parsed header and the message body (lib/body.ts).

import { randomUUID } from 'node:crypto';
import { rm, unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Address } from './address.js';
import { errText, MessageBody } from './body.js';
import { LOGDEBUG, LOGERROR } from './constants.js';
import type { MailHeader } from './header.js';
import { MetaStore, type MetaValue } from './meta.js';
import { Results } from './results.js';

export interface TransactionHost {
  spool_dir(): string;
  temp_file(): string;
  size_threshold(): number;
  log(level: number, ...msg: unknown[]): void;
}

export class Transaction extends MessageBody {
  private _sender: Address | undefined;
  private _recipients: Address[] = [];
  private _header: MailHeader | undefined;
  private readonly _notes = new Map<string, unknown>();
  private readonly _started = Math.floor(Date.now() / 1000);
  private tempFiles: string[] = [];
  private tempDirs: string[] = [];
  /** Made on first use: the session names its transactions itself. */
  private _uuid?: string;
  private readonly _meta = new MetaStore();
  /** Per-plugin structured results of this transaction (Haraka's transaction.results). */
  readonly results = new Results();

  constructor(host: TransactionHost) {
    super(host);
  }

  /**
   * `<connection uuid>.<n>`, n being the number this message has on its connection (the
   * connection's transaction_count once its DATA started). The session sets it when it creates
   * the transaction; a transaction made on its own has a UUID of its own.
   */
  uuid(...v: [string?]): string {
    if (v.length && v[0] !== undefined) this._uuid = v[0];
    return (this._uuid ??= randomUUID().toUpperCase());
  }

  /** A message meta value (KumoMTA's msg:get_meta): set here, or copied from the connection at DATA. */
  get_meta(name: string): MetaValue | undefined {
    return this._meta.get(name);
  }

  /** Sets a message meta value; anything that does not survive JSON unchanged throws MetaValueError. */
  set_meta(name: string, value: unknown): MetaValue {
    return this._meta.set(name, value, 'transaction.set_meta');
  }

  /** Every meta value as a fresh plain object (what queue/maildir writes with its `meta` option). */
  all_meta(): Record<string, MetaValue> {
    return this._meta.all();
  }

  /** Copies the connection's meta in (at DATA); values the transaction already has are kept. */
  copy_meta_from(values: Record<string, MetaValue>): void {
    this._meta.merge_missing(values);
  }

  /** Unix time (seconds) the transaction was created. */
  started(): number {
    return this._started;
  }

  sender(address?: Address): Address | undefined {
    if (arguments.length) this._sender = address;
    return this._sender;
  }

  /** The recipients; with an argument, replaces the whole list. */
  recipients(list?: Address[]): Address[] {
    if (list) this._recipients = [...list];
    return [...this._recipients];
  }

  add_recipient(address: Address | undefined): void {
    if (address) this._recipients.push(address);
  }

  /** Removes every recipient whose address() equals that of `address`. */
  remove_recipient(address: Address | undefined): void {
    if (!address) return;
    const a = address.address();
    this._recipients = this._recipients.filter((r) => r.address() !== a);
  }

  /** Undefined until the DATA headers are complete. */
  header(header?: MailHeader): MailHeader | undefined {
    if (arguments.length) this._header = header;
    return this._header;
  }

  /** notes(key) reads; notes(key, value) writes, also when value is undefined. */
  notes(key: string, value?: unknown): any {
    if (arguments.length < 2) return this._notes.get(key);
    this._notes.set(key, value);
    return value;
  }

  /** What a queue plugin delivers: the (possibly modified) header, then the body from body_start. */
  message_stream(): Readable {
    const head = Buffer.from(this._header?.as_string() ?? '', 'latin1');
    const body = this.bodyChunks();
    return Readable.from(
      (async function* () {
        if (head.length) yield head;
        yield* body;
      })(),
      { objectMode: false },
    );
  }

  /** A file to delete in cleanup() (Plugin#temp_file registers here). */
  register_temp_file(path: string): void {
    this.tempFiles.push(path);
  }

  /** A directory to remove recursively in cleanup() (Plugin#temp_dir registers here). */
  register_temp_dir(path: string): void {
    this.tempDirs.push(path);
  }

  /** qpsmtpd's DESTROY: drops the spool file and every registered temp file and dir. Idempotent. */
  async cleanup(): Promise<void> {
    await this.discardBody();
    const files = this.tempFiles;
    const dirs = this.tempDirs;
    this.tempFiles = [];
    this.tempDirs = [];
    if (files.length) this.host.log(LOGDEBUG, 'Cleaning up temporary transaction files');
    for (const f of files) {
      try {
        await unlink(f);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.host.log(LOGERROR, 'Could not unlink temporary file ', f, ': ', errText(e));
        }
      }
    }
    if (dirs.length) this.host.log(LOGDEBUG, 'Cleaning up temporary directories');
    for (const d of dirs) {
      await rm(d, { recursive: true, force: true }).catch((e: unknown) =>
        this.host.log(LOGERROR, 'Could not unlink temporary dir ', d, ': ', errText(e)),
      );
    }
  }
}
