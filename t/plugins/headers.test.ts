// headers: qpsmtpd's plugin tests (test_invalid_date_range, test_hook_data_post) as facts, the
// fixed `552 901` reply, deferred rejects and karma, argument checks, and SMTP sessions.
import { afterEach, describe, expect, it } from 'vitest';
import { Address, DECLINED, DENY, DENYSOFT, LOGINFO, MailHeader, type Plugin, type Transaction } from '../../lib/index.js';
import { strftime } from '../../lib/strftime.js';
import { make_runtime } from '../lib/harness.js';
import { open_session, quit, send_message, temp_dirs, view_of } from '../fixtures/plugins-c/helpers.js';
import { str2time } from '../../plugins/headers.js';

type Result = number | [number, ...string[]];
interface Headers extends Plugin {
  hook_data_post(t: Transaction): Result;
  invalid_date_range(date?: string): string | undefined;
}

const tmp = temp_dirs();
const open_transactions: Transaction[] = [];
afterEach(async () => {
  tmp.cleanup();
  for (const t of open_transactions.splice(0)) await t.cleanup();
});

const ctime = (offset_s = 0) => strftime('%a %b %e %H:%M:%S %Y', new Date(Date.now() + offset_s * 1000));
const code = (r: Result) => (Array.isArray(r) ? r[0] : r);
const DAY = 86400;

async function setup(line = 'headers', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], loglevel: '7', ...files });
  const { qp, view } = view_of<Headers>(rt.runtime, 'headers');
  open_transactions.push(qp.transaction);
  return { ...rt, qp, view };
}

/** qpsmtpd's setup_test_headers. */
async function setup_test_headers(view: Headers, tran: Transaction) {
  tran.sender(Address.parse('<matt@example.com>'));
  const h = new MailHeader();
  tran.header(h);
  h.add('From', '<matt@example.com>');
  h.add('Date', ctime());
  await tran.body_write('test message body ');
  view.connection.relay_client(0);
  tran.notes('whitelistsender', 0);
  view.connection.notes('whitelisthost', 0);
  view.connection.notes('naughty', 0);
}

describe('headers: qpsmtpd test_invalid_date_range', () => {
  it('future and past windows', async () => {
    const { view, qp } = await setup();
    qp.transaction.header(new MailHeader());
    expect(view.invalid_date_range(ctime())).toBeUndefined(); // valid
    view._args.future = 2;
    expect(view.invalid_date_range(ctime(6 * DAY))).toBe('The Date header is too far in the future');
    expect(view.invalid_date_range(ctime(3 * DAY))).toBe('The Date header is too far in the future');
    expect(view.invalid_date_range(ctime(1 * DAY))).toBeUndefined(); // a little new
    view._args.past = 2;
    expect(view.invalid_date_range(ctime(-6 * DAY))).toBe('The Date header is too far in the past');
    expect(view.invalid_date_range(ctime(-3 * DAY))).toBe('The Date header is too far in the past');
    expect(view.invalid_date_range(ctime(-1 * DAY))).toBeUndefined(); // a little old
  });

  it('no header object or no Date → nothing to check; an unparseable date is skipped', async () => {
    const { view, qp, logged } = await setup('headers future 1 past 1');
    expect(view.invalid_date_range(ctime(9 * DAY))).toBeUndefined(); // no header yet
    qp.transaction.header(new MailHeader());
    expect(view.invalid_date_range()).toBeUndefined();
    expect(view.invalid_date_range('next tuesday')).toBeUndefined();
    expect(logged.some((l) => l.endsWith('skip, date not parseable (next tuesday)'))).toBe(true);
  });
});

describe('headers: qpsmtpd test_hook_data_post', () => {
  it('reject_type perm (default): DECLINED, then DENY for missing Date/From, too new, too old; temp → DENYSOFT', async () => {
    const { view, qp } = await setup('headers require From,Date');
    view._args.reject = 1;
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    expect(code(view.hook_data_post(tran))).toBe(DECLINED);

    tran.header()!.delete('Date');
    expect(code(view.hook_data_post(tran))).toBe(DENY); // missing date

    tran.header()!.add('Date', ctime());
    tran.header()!.delete('From');
    expect(code(view.hook_data_post(tran))).toBe(DENY); // missing from
    tran.header()!.add('From', '<matt@example.com>');

    view._args.future = 5;
    tran.header()!.replace('Date', ctime(6 * DAY));
    expect(code(view.hook_data_post(tran))).toBe(DENY); // too new

    view._args.past = 5;
    tran.header()!.replace('Date', ctime(-6 * DAY));
    expect(code(view.hook_data_post(tran))).toBe(DENY); // too old

    view._args.reject_type = 'temp';
    expect(code(view.hook_data_post(tran))).toBe(DENYSOFT); // defer, not deny
    view._args.reject_type = 'perm';
    expect(code(view.hook_data_post(tran))).toBe(DENY);
  });
});

describe('headers: replies, notes, karma', () => {
  it('answers with the error texts, not the numeric code (qpsmtpd: "552 901")', async () => {
    const { view, qp, logged } = await setup('headers require From,Date');
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    tran.header()!.delete('Date');
    expect(view.hook_data_post(tran)).toEqual([DENY, 'We require a valid Date header']);
    expect(logged.some((l) => l.endsWith('fail, RFC 5322 validation errors'))).toBe(true);
    view._args.reject_type = 'temp';
    tran.header()!.add('Subject', 'one');
    tran.header()!.add('Subject', 'two');
    expect(view.hook_data_post(tran)).toEqual([
      DENYSOFT,
      'We require a valid Date header\nOnly one Subject header allowed. See RFC 5322, Section 3.6',
    ]);
  });

  it('stores deferred rejects for naughty and lowers karma, even with reject 0', async () => {
    const { view, qp, logged } = await setup('headers reject 0 reject_type temp require From,Date');
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    view.connection.notes('naughty', undefined);
    tran.header()!.delete('Date');
    tran.header()!.add('To', 'a@b');
    tran.header()!.add('To', 'c@d');
    expect(view.hook_data_post(tran)).toBe(DECLINED);
    expect(logged.some((l) => l.endsWith('fail, tolerated, RFC 5322 validation errors'))).toBe(true);
    const c = view.connection;
    expect(c.notes('naughty')).toBe('We require a valid Date header\r\nOnly one To header allowed. See RFC 5322, Section 3.6');
    expect(c.notes('naughty_reject_type')).toBe('temp');
    expect(c.notes('karma')).toBe(-2);
  });

  it('a date outside the window lowers karma and rejects with its own text', async () => {
    const { view, qp } = await setup('headers past 1');
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    tran.header()!.replace('Date', 'Tue, 1 Jul 2003 10:52:37 +0200');
    expect(view.hook_data_post(tran)).toEqual([DENY, 'The Date header is too far in the past']);
    expect(view.connection.notes('karma')).toBe(-1);
  });

  it('no data → "You must send some data first"; no header → "Headers are missing"', async () => {
    const { view, qp } = await setup();
    const tran = qp.transaction;
    expect(view.hook_data_post(tran)).toEqual([DENY, 'You must send some data first']);
    await tran.body_write('x\n');
    expect(view.hook_data_post(tran)).toEqual([DENY, 'Headers are missing']);
  });

  it('immune clients are not checked', async () => {
    const { view, qp, logged } = await setup('headers require From,Date');
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    tran.header()!.delete('From');
    view.connection.relay_client(1);
    expect(view.hook_data_post(tran)).toBe(DECLINED);
    expect(logged.some((l) => l.endsWith('skip, relay client'))).toBe(true);
  });

  it('an empty required header counts as missing; the default requires only From', async () => {
    const { view, qp } = await setup();
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    tran.header()!.delete('Date');
    expect(view.hook_data_post(tran)).toBe(DECLINED); // Date not required by default
    tran.header()!.replace('From', '   ');
    expect(view.hook_data_post(tran)).toEqual([DENY, 'We require a valid From header']);
  });

  it('reject naughty: the rejection is deferred to the naughty plugin', async () => {
    const { view, qp } = await setup('headers reject naughty');
    const tran = qp.transaction;
    await setup_test_headers(view, tran);
    view.connection.notes('naughty', undefined);
    tran.header()!.delete('From');
    expect(view.hook_data_post(tran)).toBe(DECLINED);
    expect(view.connection.notes('naughty')).toBe('We require a valid From header\r\n(headers) We require a valid From header');
  });
});

describe('headers: str2time (Date::Parse)', () => {
  it.each([
    ['Tue, 1 Jul 2003 10:52:37 +0200', Date.UTC(2003, 6, 1, 8, 52, 37) / 1000],
    ['Tue, 1 Jul 2003 10:52:37 +0200 (CEST)', Date.UTC(2003, 6, 1, 8, 52, 37) / 1000],
    ['1 Jul 03 10:52 GMT', Date.UTC(2003, 6, 1, 10, 52) / 1000],
    ['Tue, 01 Jul 2003 10:52:37 EDT', Date.UTC(2003, 6, 1, 14, 52, 37) / 1000],
    ['Wed, 31 Dec 1969 23:59:59 -0000', -1],
    ['2003-07-01T10:52:37Z', Date.UTC(2003, 6, 1, 10, 52, 37) / 1000],
  ])('%s', (s, want) => {
    expect(str2time(s)).toBe(want);
  });
  it('local time without a zone; nonsense is undefined', () => {
    expect(str2time('Tue Jul  1 10:52:37 2003')).toBe(new Date(2003, 6, 1, 10, 52, 37).getTime() / 1000);
    for (const bad of ['0', 'garbage', 'Mon, 32 Jan 2020 10:00:00 +0000', 'Thu, 13 Feb 2020 25:00:00 +0000', '1 Foo 2020 10:00 GMT', '1 Jan 2020 10:00 XYZZY']) {
      expect(str2time(bad)).toBeUndefined();
    }
  });
});

describe('headers: arguments', () => {
  it('defaults: require From, reject 1, reject_type perm', async () => {
    const { view } = await setup();
    expect(view._args).toMatchObject({ reject: 1, reject_type: 'perm' });
  });
  it('unknown arguments and bad day counts stop the start-up', async () => {
    await expect(setup('headers maxage 5')).rejects.toThrow(/plugin headers: unknown argument 'maxage'/);
    await expect(setup('headers future soon')).rejects.toThrow(/argument 'future' must be a number of days/);
  });
  it("check_basicheaders' `days` is accepted and ignored, with a warning (as qpsmtpd 1.00 ignores it)", async () => {
    const { view, qp, logged } = await setup('headers days 5 reject_type temp require From,Date');
    expect(logged.some((l) => l.includes("argument 'days' is ignored"))).toBe(true);
    qp.transaction.header(new MailHeader());
    expect(view.invalid_date_range(ctime(-30 * DAY))).toBeUndefined();
  });
});

describe('headers: SMTP sessions', () => {
  const files = (line: string) => ({
    plugins: [line, 'rcpt_ok', 'queue/discard'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: String(LOGINFO),
  });

  it('a complete header is queued; a missing Date gets 552 with the text', async () => {
    const { runtime } = await make_runtime(files('headers require From,Date future 2 past 15'));
    const s = await open_session(runtime);
    const ok = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['From: a@b.test', `Date: ${ctime()}`, 'Subject: hi', '', 'body']);
    expect(ok).toMatchObject({ code: 250, text: 'Queued (discarded)' });
    const no_date = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['From: a@b.test', 'Subject: hi', '', 'body']);
    expect(no_date).toMatchObject({ code: 552, text: 'We require a valid Date header' });
    const old = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['From: a@b.test', 'Date: Tue, 1 Jul 2003 10:52:37 +0200', '', 'b']);
    expect(old).toMatchObject({ code: 552, text: 'The Date header is too far in the past' });
    await quit(s);
  });

  it('reject_type temp → 452; two From headers → 452 with the RFC 5322 text', async () => {
    const { runtime } = await make_runtime(files('headers reject_type temp'));
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['From: a@b.test', 'From: c@d.test', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'Only one From header allowed. See RFC 5322, Section 3.6' });
    await quit(s);
  });

  it('reject 0: the message is queued anyway', async () => {
    const { runtime } = await make_runtime(files('headers reject 0'));
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: no from', '', 'body']);
    expect(r).toMatchObject({ code: 250 });
    await quit(s);
  });
});
