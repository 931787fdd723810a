// headers: validate the message header at data_post (qpsmtpd's `headers`, 2012 Matt Simerson).
//
//   headers [require From,Date,…] [future N] [past N] [reject 0|1|naughty]
//           [reject_type perm|temp|disconnect|temp_disconnect] [loglevel N]
//
// - no data at all → get_reject('You must send some data first'); no header object →
//   get_reject('Headers are missing');
// - relay clients, whitelisted hosts and senders are skipped (is_immune);
// - each `require`d header that is missing or empty, and each singular header (Date From Sender
//   Reply-To To Cc Bcc Message-Id In-Reply-To References Subject) present more than once, costs
//   one karma point and is stored as a deferred reject for the naughty plugin
//   (`We require a valid <h> header`, `Only one <h> header allowed. See RFC 5322, Section 3.6`),
//   whatever `reject` says, as qpsmtpd does;
// - a Date header more than `past` days old or `future` days ahead → get_reject with
//   `The Date header is too far in the past` / `… in the future` (karma −1);
// - any header error → get_reject with the error texts.
//
// qpsmtpd answered header errors with the numeric code as the text (`552 901`); here the reply
// carries the error texts, one per line (`552 We require a valid Date header`).
import { DECLINED, LOGINFO, LOGWARN, Plugin, PluginArgumentError, type MailHeader, type Transaction } from '../lib/index.js';

const SINGULAR_HEADERS = ['Date', 'From', 'Sender', 'Reply-To', 'To', 'Cc', 'Bcc', 'Message-Id', 'In-Reply-To', 'References', 'Subject'];

const MONTHS: Record<string, number> = {
  jan: 0,
  feb: 1,
  mar: 2,
  apr: 3,
  may: 4,
  jun: 5,
  jul: 6,
  aug: 7,
  sep: 8,
  oct: 9,
  nov: 10,
  dec: 11,
};

/** RFC 5322 4.3 obsolete zones (minutes east of UTC); military letters count as 0 (RFC 5322). */
const ZONES: Record<string, number> = {
  UT: 0,
  UTC: 0,
  GMT: 0,
  Z: 0,
  EST: -300,
  EDT: -240,
  CST: -360,
  CDT: -300,
  MST: -420,
  MDT: -360,
  PST: -480,
  PDT: -420,
};

function zone_offset(z: string | undefined): number | null | undefined {
  if (!z) return undefined; // no zone: local time, as Date::Parse
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(z);
  if (m) return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  const u = z.toUpperCase();
  if (u in ZONES) return ZONES[u]!;
  if (/^[A-IK-Z]$/.test(u)) return 0;
  return null; // not a zone we know: unparseable
}

function make_time(
  year: number,
  month: number,
  day: number,
  h: number,
  mi: number,
  s: number,
  zone: number | null | undefined,
): number | undefined {
  if (zone === null) return undefined;
  if (month < 0 || month > 11 || day < 1 || day > 31 || h > 23 || mi > 59 || s > 60) return undefined;
  if (year < 100) year += year < 50 ? 2000 : 1900;
  let ms: number;
  if (zone === undefined) {
    const d = new Date(year, month, day, h, mi, s);
    if (d.getDate() !== day) return undefined;
    ms = d.getTime();
  } else {
    ms = Date.UTC(year, month, day, h, mi, s);
    if (new Date(ms).getUTCDate() !== day) return undefined;
    ms -= zone * 60_000;
  }
  return Math.floor(ms / 1000);
}

/**
 * Date::Parse's str2time for the forms mail carries: RFC 5322 (`Tue, 1 Jul 2003 10:52:37
 * +0200 (CEST)`, obsolete zones, 2-digit years), ctime (`Tue Jul  1 10:52:37 2003`) and ISO
 * 8601. Unix seconds, or undefined when the text is not a date.
 */
export function str2time(text: string): number | undefined {
  const s = text
    .replace(/\([^()]*\)/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  let m = /^(?:[A-Za-z]{3,9},? )?(\d{1,2})[ -]([A-Za-z]{3})[a-z]*[ -](\d{2,4}) (\d{1,2}):(\d{2})(?::(\d{2}))?(?: ([+-]\d{2}:?\d{2}|[A-Za-z]{1,5}))?$/.exec(s);
  if (m) {
    const mon = MONTHS[m[2]!.toLowerCase()];
    if (mon === undefined) return undefined;
    return make_time(Number(m[3]), mon, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0), zone_offset(m[7]));
  }
  m = /^(?:[A-Za-z]{3,9},? )?([A-Za-z]{3})[a-z]* (\d{1,2}) (\d{1,2}):(\d{2})(?::(\d{2}))?(?: ([+-]\d{2}:?\d{2}|[A-Za-z]{1,5}))? (\d{4})$/.exec(s);
  if (m) {
    const mon = MONTHS[m[1]!.toLowerCase()];
    if (mon === undefined) return undefined;
    return make_time(Number(m[7]), mon, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5] ?? 0), zone_offset(m[6]));
  }
  m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)? ?(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
  if (m) {
    return make_time(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0), zone_offset(m[7]));
  }
  return undefined;
}

type Result = number | [number, ...string[]];

export default class extends Plugin {
  _required_headers: string[] = ['From'];

  override register(...args: string[]): void {
    const a = this.parse_args(args, {
      require: undefined,
      future: undefined,
      past: undefined,
      reject: 1,
      reject_type: 'perm',
      days: undefined,
    });
    if (!a.reject_type) a.reject_type = 'perm';
    if (a.days !== undefined) {
      // check_basicheaders' old argument: `headers` (qpsmtpd 1.00) ignores it
      this.log(LOGWARN, "argument 'days' is ignored by headers; use 'future N' and 'past N'");
    }
    for (const k of ['future', 'past'] as const) {
      if (a[k] !== undefined && !/^\d+(?:\.\d+)?$/.test(String(a[k]))) {
        throw new PluginArgumentError(`plugin ${this.plugin_name()}: argument '${k}' must be a number of days, not '${a[k]}'`);
      }
    }
    if (a.require) this._required_headers = String(a.require).split(',').filter(Boolean);
  }

  hook_data_post(transaction: Transaction): Result {
    if (transaction.data_size() === 0) return this.get_reject('You must send some data first', 'no data');
    const header = transaction.header();
    if (!header) return this.get_reject('Headers are missing', 'missing headers');
    if (this.is_immune()) return DECLINED;

    const errors = [...this.has_required_headers(header), ...this.has_singular_headers(header)];

    const err_msg = this.invalid_date_range();
    if (err_msg) return this.get_reject(err_msg, err_msg);

    if (errors.length) return this.get_reject(errors.join('\n'), 'RFC 5322 validation errors');
    this.log(LOGINFO, 'pass');
    return DECLINED;
  }

  /** The texts of the missing required headers (qpsmtpd returned their count). */
  has_required_headers(header: MailHeader): string[] {
    const errors: string[] = [];
    for (const h of this._required_headers) {
      if (has_value(header.get(h))) continue;
      const msg = `We require a valid ${h} header`;
      errors.push(msg);
      this.adjust_karma(-1);
      this.store_deferred_reject(msg);
      this.log(LOGINFO, `fail, no ${h} header`);
    }
    return errors;
  }

  /** The texts of the singular headers that appear more than once. */
  has_singular_headers(header: MailHeader): string[] {
    const errors: string[] = [];
    for (const h of SINGULAR_HEADERS) {
      if (!has_value(header.get(h))) continue;
      if (header.count(h) === 1) continue;
      const msg = `Only one ${h} header allowed. See RFC 5322, Section 3.6`;
      errors.push(msg);
      this.adjust_karma(-1);
      this.store_deferred_reject(msg);
      this.log(LOGINFO, `fail, too many ${h} headers`);
    }
    return errors;
  }

  /** A rejection text when the Date (given, or the header's) is outside future/past days. */
  invalid_date_range(given?: string): string | undefined {
    const header = this.transaction.header();
    if (!header) return undefined;
    const date = (given || header.get('Date'))?.replace(/\n$/, '');
    if (!date) return undefined;
    const msg_ts = str2time(date);
    if (!msg_ts) {
      this.log(LOGINFO, `skip, date not parseable (${date})`);
      return undefined;
    }
    const now = Math.floor(Date.now() / 1000);
    const past = Number(this._args.past) || 0;
    if (past && msg_ts < now - past * 24 * 3600) {
      this.log(LOGINFO, `fail, date too old (${date})`);
      this.adjust_karma(-1);
      return 'The Date header is too far in the past';
    }
    const future = Number(this._args.future) || 0;
    if (future && msg_ts > now + future * 24 * 3600) {
      this.log(LOGINFO, `fail, date in future (${date})`);
      this.adjust_karma(-1);
      return 'The Date header is too far in the future';
    }
    return undefined;
  }
}

/** Mail::Header's get() in Perl truth: present and not empty (the value keeps its newline there). */
function has_value(v: string | undefined): boolean {
  return v !== undefined && v.trim() !== '';
}
