// http_config: config values served over HTTP.
//
//   http_config <url> [<url>…] [prefetch <name>[,<name>…]] [refresh <seconds>] [timeout <seconds>]
//
// A config lookup of `<name>` is answered with the lines of `<url><name>` from the first URL
// (in the order given) whose answer is a success with at least one line that is not blank
// and not a `#` comment; otherwise the config files decide. For example
//
//   http_config http://localhost/~smtpd/config/ http://www.example.com/cgi-bin/qp?config=
//
// looks up `me` at http://localhost/~smtpd/config/me, then at
// http://www.example.com/cgi-bin/qp?config=me.
//
// Difference from qpsmtpd: config lookups are synchronous in qpsmtpd-ts, so the plugin cannot
// ask the web server while a lookup waits (qpsmtpd did, on every lookup). It answers from a
// cache instead, shared by all sessions of a process:
// - the names listed with `prefetch` are fetched while the plugin loads (start-up waits up
//   to `timeout` for them), so plugins loaded after this one see their values at once;
// - any other name is fetched in the background the first time it is looked up; until that
//   answer is in, the lookup falls through to the files;
// - every name looked up is fetched again every `refresh` seconds (default 60; 0 = never).
//   A refresh that gets no answer at all (network error, timeout) keeps the last value; an
//   answer without usable lines (404, empty) removes it.
// `timeout` (default 5 s) bounds each request. Only http: and https: URLs are accepted.
import { DECLINED, LOGDEBUG, LOGINFO, LOGWARN, OK, Plugin, PluginArgumentError, type Transaction } from '../lib/index.js';

interface Entry {
  /** The usable lines of the last answer (empty: fall through to the files). */
  lines: string[];
  /** When the last fetch finished (ms since the epoch), 0 before the first one. */
  fetched: number;
  /** The fetch in flight, if any. */
  pending?: Promise<void>;
}

const SECONDS = /^\d+(\.\d+)?$/;

export default class extends Plugin {
  _urls: string[] = [];
  _prefetch: string[] = [];
  _refresh_ms = 60000;
  _timeout_ms = 5000;
  /** name -> cached value; created at load and shared by every session's view. */
  _cache = new Map<string, Entry>();
  _timer?: NodeJS.Timeout;
  /** The loaded plugin (the views' prototype): background fetches run on it. */
  _base?: this;

  override async register(...args: string[]): Promise<void> {
    const name = this.plugin_name();
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (/^https?:\/\//i.test(a)) {
        this._urls.push(a);
        continue;
      }
      if (!['prefetch', 'refresh', 'timeout', 'loglevel'].includes(a)) {
        throw new PluginArgumentError(`plugin ${name}: unknown argument '${a}' (URLs must start with http:// or https://; options: loglevel, prefetch, refresh, timeout)`);
      }
      const v = args[++i];
      if (v === undefined) throw new PluginArgumentError(`plugin ${name}: argument '${a}' needs a value`);
      if (a === 'prefetch') this._prefetch.push(...v.split(',').filter(Boolean));
      else if (a === 'loglevel') this._args.loglevel = v;
      else {
        if (!SECONDS.test(v)) throw new PluginArgumentError(`plugin ${name}: ${a} must be a number of seconds, got '${v}'`);
        if (a === 'refresh') this._refresh_ms = Number(v) * 1000;
        else this._timeout_ms = Number(v) * 1000 || 5000;
      }
    }
    if (!this._urls.length) this.log(LOGWARN, 'no URLs given: every lookup falls through to the files');
    this._cache = new Map();
    this._base = this;
    await Promise.all(this._prefetch.map((n) => this.fetch_name(n)));
    if (this._refresh_ms > 0 && this._urls.length) {
      this._timer = setInterval(() => void this.refresh_all(), this._refresh_ms);
      this._timer.unref();
    }
  }

  hook_config(_transaction: Transaction, config: string): number | [number, ...string[]] {
    if (!this._urls.length) return DECLINED;
    const entry = this._cache.get(config);
    if (!entry) {
      // first lookup of this name: ask in the background, the files answer this time
      void (this._base ?? this).fetch_name(config);
      return DECLINED;
    }
    if (!entry.lines.length) return DECLINED;
    this.log(LOGDEBUG, `http_config answered ${config}`);
    return [OK, ...entry.lines];
  }

  /** Fetches one name (again); resolves when the cache holds the answer. Never rejects. */
  fetch_name(config: string): Promise<void> {
    let entry = this._cache.get(config);
    if (!entry) this._cache.set(config, (entry = { lines: [], fetched: 0 }));
    if (entry.pending) return entry.pending;
    const e = entry;
    e.pending = this.load(config)
      .then((lines) => {
        if (lines) e.lines = lines;
        e.fetched = Date.now();
      })
      .finally(() => {
        e.pending = undefined;
      });
    return e.pending;
  }

  /** Every name looked up so far, fetched again. */
  async refresh_all(): Promise<void> {
    await Promise.all([...this._cache.keys()].map((n) => this.fetch_name(n)));
  }

  /** Waits for every fetch in flight. */
  async ready(): Promise<void> {
    await Promise.all([...this._cache.values()].map((e) => e.pending));
  }

  /**
   * The usable lines of the first URL that has some; [] when every server answered without
   * any; undefined when no server answered at all (keep what we had).
   */
  async load(config: string): Promise<string[] | undefined> {
    let answered = false;
    for (const url of this._urls) {
      this.log(LOGDEBUG, `http_config loading from ${url}`);
      let body: string;
      try {
        const res = await fetch(`${url}${config}`, { signal: AbortSignal.timeout(this._timeout_ms) });
        answered = true;
        if (!res.ok) {
          await res.body?.cancel();
          continue;
        }
        body = await res.text();
      } catch (err) {
        this.log(LOGINFO, `http_config: ${url}${config}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      const lines = body.split(/[\r\n]+/).filter((l) => l !== '' && !/^\s*#/.test(l) && /\S/.test(l));
      if (lines.length) return lines;
    }
    return answered ? [] : undefined;
  }

  close(): void {
    if (this._timer) clearInterval(this._timer);
    this._timer = undefined;
  }
}
