// The hook registry and runner (qpsmtpd's run_hooks / run_continuation / run_hooks_no_respond).
import {
  DECLINED,
  DENY,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  LOGCRIT,
  LOGDEBUG,
  LOGERROR,
  is_return_code,
  return_code,
} from './constants.js';
import type { Plugin } from './plugin.js';

/** A parser returned by a `*_parse` hook: `(self, cmd, line) => [OK, ...values] | [DENY, error]`. */
export type ParserFn = (self: unknown, cmd: string, line: string) => unknown[];

export type HookReturn = number | readonly unknown[] | undefined | null | void;

export interface HookEntry {
  plugin: Plugin;
  /** Method name on the plugin, or a function called with the plugin view as `this`. */
  method: string | ((...args: any[]) => unknown);
  /** plugin_name(): what logs and transaction notes use. */
  name: string;
}

export interface HookResult {
  /** 0 when no plugin registered the hook, else the winning code (DECLINED if none decided). */
  rc: number;
  /** Message lines, already split on `\n`. */
  msg: string[];
  /** What followed the code in the winning plugin's result, as returned (not split, not stringified). */
  values?: unknown[];
  parser?: ParserFn;
  /** plugin_name of the plugin whose result won. */
  plugin?: string;
  /** Set when a plugin threw or timed out: the engine answers 451 4.3.0. */
  fault?: unknown;
}

/** What the runner needs from the session it runs for. */
export interface HookSession {
  hooks: Hooks;
  plugin_view(plugin: Plugin): Plugin;
  /** The transaction hook methods receive first (qpsmtpd creates one on demand). */
  hook_transaction(): unknown;
  log(level: number, ...msg: unknown[]): void;
  /** Whether a line at `level` goes anywhere (so debug text is not built for nothing). */
  logs(level: number): boolean;
  varlog(level: number, hook: string | undefined, plugin: string | undefined, ...msg: unknown[]): void;
  hook_timeout_ms(plugin: Plugin): number;
}

export class HookTimeoutError extends Error {
  constructor(
    readonly plugin: string,
    readonly hook: string,
    readonly ms: number,
  ) {
    super(`plugin ${plugin} did not finish hook ${hook} within ${ms / 1000} s`);
    this.name = 'HookTimeoutError';
  }
}

const NONE: readonly HookEntry[] = Object.freeze([]);
const DENIALS = new Set([DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT]);
export const FAULT_MESSAGE = 'Internal error - try again later';

export class Hooks {
  private table = new Map<string, HookEntry[]>();

  register(hook: string, entry: HookEntry, unshift = false): void {
    let list = this.table.get(hook);
    if (!list) this.table.set(hook, (list = []));
    if (unshift) list.unshift(entry);
    else list.push(entry);
  }

  /** Removes every entry of one plugin (tests' unmock). */
  unregister(hook: string, name: string): void {
    const list = this.table.get(hook);
    if (!list) return;
    const kept = list.filter((e) => e.name !== name);
    if (kept.length) this.table.set(hook, kept);
    else this.table.delete(hook);
  }

  get(hook: string): readonly HookEntry[] {
    return this.table.get(hook) ?? NONE;
  }

  has(hook: string): boolean {
    return this.table.has(hook);
  }

  names(): string[] {
    return [...this.table.keys()];
  }

  clear(): void {
    this.table.clear();
  }
}

function method_of(entry: HookEntry, view: Plugin): (...args: unknown[]) => unknown {
  const fn = typeof entry.method === 'function' ? entry.method : (view as unknown as Record<string, unknown>)[entry.method];
  if (typeof fn !== 'function') throw new Error(`${entry.name} has no method ${String(entry.method)}`);
  return fn as (...args: unknown[]) => unknown;
}

function is_thenable(x: unknown): x is PromiseLike<unknown> {
  return !!x && typeof (x as { then?: unknown }).then === 'function';
}

/** One hook call's abort state; its AbortController exists only once `signal` was read. */
export interface HookCall {
  ac?: AbortController;
  /** Set when the call timed out: a signal asked for later is born aborted. */
  reason?: unknown;
}

export function call_signal(call: HookCall): AbortSignal {
  if (!call.ac) {
    call.ac = new AbortController();
    if (call.reason !== undefined) call.ac.abort(call.reason);
  }
  return call.ac.signal;
}

type View = Plugin & { _hook?: string; _call?: HookCall };

/**
 * Calls one hook method with `this` = the session's plugin view, `_hook` and the call's abort
 * state set for the duration (restored after, like Perl's `local`). A synchronous result is
 * returned as is (no Promise, no timer); only a returned Promise is raced against the timeout.
 * A synchronous throw propagates synchronously.
 */
function call_entry(session: HookSession, entry: HookEntry, hook: string, args: unknown[]): unknown {
  const view = session.plugin_view(entry.plugin) as View;
  const fn = method_of(entry, view);
  const prev_hook = view._hook;
  const prev_call = view._call;
  const call: HookCall = {};
  view._hook = hook;
  view._call = call;
  let r: unknown;
  try {
    r = fn.call(view, session.hook_transaction(), ...args);
  } finally {
    if (!is_thenable(r)) {
      view._hook = prev_hook;
      view._call = prev_call;
    }
  }
  if (!is_thenable(r)) return r;
  return settle(session, entry, hook, r, call).finally(() => {
    view._hook = prev_hook;
    view._call = prev_call;
  });
}

async function settle(session: HookSession, entry: HookEntry, hook: string, r: PromiseLike<unknown>, call: HookCall): Promise<unknown> {
  const ms = session.hook_timeout_ms(entry.plugin);
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new HookTimeoutError(entry.name, hook, ms);
      reject(err); // first, so a plugin that settles on abort cannot win the race
      call.reason = err;
      call.ac?.abort(err);
    }, ms);
  });
  try {
    return await Promise.race([r, expiry]);
  } finally {
    clearTimeout(timer);
  }
}

/** `[rc, ...messages]` from whatever a hook returned; undefined is DECLINED. */
function normalize(r: unknown): [unknown, unknown[]] {
  if (r === undefined || r === null) return [DECLINED, []];
  if (Array.isArray(r)) return [r[0] ?? DECLINED, r.slice(1)];
  return [r, []];
}

function split_messages(parts: unknown[]): string[] {
  const out: string[] = [];
  for (const p of parts) {
    if (p === undefined || p === null) continue;
    out.push(...String(p).split('\n'));
  }
  while (out.length && out[out.length - 1] === '') out.pop();
  return out;
}

function record_in_notes(session: HookSession, name: string, hook: string, rc: number): void {
  const tran = session.hook_transaction() as { notes?: (k: string) => unknown } | undefined;
  const note = tran?.notes?.(name);
  if (note && typeof note === 'object' && !Array.isArray(note)) {
    const n = note as Record<string, { return?: number }>;
    (n[`hook_${hook}`] ??= {}).return = rc;
  }
}

/**
 * Runs the plugins of `hook` in order until one returns something other than DECLINED.
 * A throw or a timeout is logged and ends the chain as a temporary failure, unless the plugin
 * set `continue_on_error` (qpsmtpd's old behaviour: log and try the next plugin).
 */
export async function run_hooks(session: HookSession, hook: string, args: unknown[]): Promise<HookResult> {
  const entries = session.hooks.get(hook);
  if (!entries.length) return { rc: 0, msg: [] };
  let rc = DECLINED;
  let rest: unknown[] = [];
  let winner: string | undefined;
  let fault: unknown;
  const debug = session.logs(LOGDEBUG);
  for (const entry of entries) {
    const name = entry.name;
    if (debug) session.varlog(LOGDEBUG, hook, name);
    let raw: unknown;
    try {
      raw = call_entry(session, entry, hook, args);
      if (is_thenable(raw)) raw = await raw;
    } catch (err) {
      session.log(LOGCRIT, `FATAL PLUGIN ERROR [${name}]:`, describe_error(err));
      if ((entry.plugin as { continue_on_error?: boolean }).continue_on_error) continue;
      fault = err;
      rc = DENYSOFT;
      rest = [FAULT_MESSAGE];
      winner = name;
    }
    if (fault === undefined) {
      const [code, msgs] = normalize(raw);
      if (!is_return_code(code)) {
        session.log(LOGERROR, `Plugin ${name}, hook ${hook} returned ${String(code)}`);
        continue;
      }
      rc = code;
      rest = msgs;
      winner = name;
    }
    record_in_notes(session, name, hook, rc);
    const first = rest[0] === undefined || typeof rest[0] === 'function' ? '' : String(rest[0]);
    if (debug) session.log(LOGDEBUG, `Plugin ${name}, hook ${hook} returned ${return_code(rc)}, ${first}`);
    const notify = DENIALS.has(rc) ? 'deny' : 'ok';
    if (hook !== notify && session.hooks.has(notify)) await run_hooks_no_respond(session, notify, [name, rc, first]);
    if (rc !== DECLINED || fault !== undefined) break;
  }
  if (typeof rest[0] === 'function') return { rc, msg: [], parser: rest[0] as ParserFn, plugin: winner };
  return { rc, msg: split_messages(rest), values: rest, plugin: winner, ...(fault !== undefined ? { fault } : {}) };
}

/**
 * For hooks without a responder (deny, ok, disconnect, reset_transaction, post-connection…):
 * failures are logged and the next plugin runs. Returns `[rc, ...rest]`, `[0, '']` if none.
 */
export async function run_hooks_no_respond(session: HookSession, hook: string, args: unknown[]): Promise<unknown[]> {
  const entries = session.hooks.get(hook);
  if (!entries.length) return [0, ''];
  let r: unknown[] = [];
  for (const entry of entries) {
    try {
      let raw = call_entry(session, entry, hook, args);
      if (is_thenable(raw)) raw = await raw;
      const [code, msgs] = normalize(raw);
      r = [code, ...msgs];
    } catch (err) {
      session.log(LOGERROR, `FATAL PLUGIN ERROR [${entry.name}]:`, describe_error(err));
      continue;
    }
    if (r[0] !== DECLINED) break;
  }
  if (r[0] === undefined) r[0] = DECLINED;
  return r;
}

/**
 * For the synchronous hooks (logging, config, user_config), which run inside synchronous
 * calls. A plugin returning a Promise there is reported and counted as DECLINED.
 */
export function run_hooks_sync(session: HookSession, hook: string, args: unknown[], report: (msg: string) => void): unknown[] {
  const entries = session.hooks.get(hook);
  if (!entries.length) return [0, ''];
  let r: unknown[] = [];
  for (const entry of entries) {
    const view = session.plugin_view(entry.plugin) as Plugin & { _hook?: string };
    const prev = view._hook;
    view._hook = hook;
    try {
      const raw = method_of(entry, view).apply(view, [session.hook_transaction(), ...args]);
      if (is_thenable(raw)) {
        report(`plugin ${entry.name}: hook ${hook} must be synchronous but returned a Promise; ignored`);
        continue;
      }
      const [code, msgs] = normalize(raw);
      r = [code, ...msgs];
    } catch (err) {
      report(`FATAL PLUGIN ERROR [${entry.name}]: ${describe_error(err)}`);
      continue;
    } finally {
      view._hook = prev;
    }
    if (r[0] !== DECLINED) break;
  }
  if (r[0] === undefined) r[0] = DECLINED;
  return r;
}

export function describe_error(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
