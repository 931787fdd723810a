// strftime(3) as glibc does it in the C locale: what qpsmtpd's POSIX::strftime gives the
// logging plugins for file names and time stamps.

export interface StrftimeOptions {
  /** Format the time as UTC instead of local time (tests, `%z` = `+0000`, `%Z` = `GMT`). */
  utc?: boolean;
  /** Extra conversions, e.g. `{ i: 'session-id' }` makes `%i` expand to that text. */
  extra?: Readonly<Record<string, string>>;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

interface Fields {
  Y: number;
  m: number; // 0-11
  d: number;
  H: number;
  M: number;
  S: number;
  w: number; // 0 = Sunday
  j: number; // 0-365
  offset: number; // minutes east of UTC
  epoch: number; // seconds
  utc: boolean;
  date: Date;
}

function fields(date: Date, utc: boolean): Fields {
  const Y = utc ? date.getUTCFullYear() : date.getFullYear();
  const m = utc ? date.getUTCMonth() : date.getMonth();
  const d = utc ? date.getUTCDate() : date.getDate();
  return {
    Y,
    m,
    d,
    H: utc ? date.getUTCHours() : date.getHours(),
    M: utc ? date.getUTCMinutes() : date.getMinutes(),
    S: utc ? date.getUTCSeconds() : date.getSeconds(),
    w: utc ? date.getUTCDay() : date.getDay(),
    j: Math.round((Date.UTC(Y, m, d) - Date.UTC(Y, 0, 1)) / 86400000),
    offset: utc ? 0 : -date.getTimezoneOffset(),
    epoch: Math.floor(date.getTime() / 1000),
    utc,
    date,
  };
}

function is_leap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** ISO 8601 week-based year and week number (`%G`, `%V`). */
function iso_week(f: Fields): [year: number, week: number] {
  const wday = (f.w + 6) % 7; // Monday = 0
  let year = f.Y;
  let week = Math.floor((f.j - wday + 10) / 7);
  if (week < 1) {
    year -= 1;
    const days = is_leap(year) ? 366 : 365;
    week = Math.floor((f.j + days - wday + 10) / 7);
  } else {
    const days = is_leap(year) ? 366 : 365;
    if (week === 53 && f.j - wday + 3 >= days) {
      year += 1;
      week = 1;
    }
  }
  return [year, week];
}

let zone_format: Intl.DateTimeFormat | undefined;

function zone_name(f: Fields): string {
  if (f.utc) return 'GMT';
  try {
    zone_format ??= new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' });
    return zone_format.formatToParts(f.date).find((p) => p.type === 'timeZoneName')?.value ?? '';
  } catch {
    return '';
  }
}

type Pad = '0' | ' ' | '';

function num(n: number, width: number, pad: Pad, flag: string): string {
  const p: Pad = flag === '-' ? '' : flag === '_' ? ' ' : flag === '0' ? '0' : pad;
  const s = String(Math.abs(n));
  const body = p ? s.padStart(width, p) : s;
  return n < 0 ? '-' + body : body;
}

function conv(c: string, f: Fields, flag: string): string | undefined {
  const hour12 = f.H % 12 === 0 ? 12 : f.H % 12;
  switch (c) {
    case 'a':
      return DAYS[f.w]!.slice(0, 3);
    case 'A':
      return DAYS[f.w]!;
    case 'b':
    case 'h':
      return MONTHS[f.m]!.slice(0, 3);
    case 'B':
      return MONTHS[f.m]!;
    case 'c':
      return expand('%a %b %e %H:%M:%S %Y', f, {});
    case 'C':
      return num(Math.floor(f.Y / 100), 2, '0', flag);
    case 'd':
      return num(f.d, 2, '0', flag);
    case 'D':
    case 'x':
      return expand('%m/%d/%y', f, {});
    case 'e':
      return num(f.d, 2, ' ', flag);
    case 'F':
      return expand('%Y-%m-%d', f, {});
    case 'g':
      return num(iso_week(f)[0] % 100, 2, '0', flag);
    case 'G':
      return num(iso_week(f)[0], 1, '', flag);
    case 'H':
      return num(f.H, 2, '0', flag);
    case 'I':
      return num(hour12, 2, '0', flag);
    case 'j':
      return num(f.j + 1, 3, '0', flag);
    case 'k':
      return num(f.H, 2, ' ', flag);
    case 'l':
      return num(hour12, 2, ' ', flag);
    case 'm':
      return num(f.m + 1, 2, '0', flag);
    case 'M':
      return num(f.M, 2, '0', flag);
    case 'n':
      return '\n';
    case 'p':
      return f.H < 12 ? 'AM' : 'PM';
    case 'P':
      return f.H < 12 ? 'am' : 'pm';
    case 'r':
      return expand('%I:%M:%S %p', f, {});
    case 'R':
      return expand('%H:%M', f, {});
    case 's':
      return String(f.epoch);
    case 'S':
      return num(f.S, 2, '0', flag);
    case 't':
      return '\t';
    case 'T':
    case 'X':
      return expand('%H:%M:%S', f, {});
    case 'u':
      return String(f.w === 0 ? 7 : f.w);
    case 'U':
      return num(Math.floor((f.j + 7 - f.w) / 7), 2, '0', flag);
    case 'V':
      return num(iso_week(f)[1], 2, '0', flag);
    case 'w':
      return String(f.w);
    case 'W':
      return num(Math.floor((f.j + 7 - ((f.w + 6) % 7)) / 7), 2, '0', flag);
    case 'y':
      return num(f.Y % 100, 2, '0', flag);
    case 'Y':
      return num(f.Y, 1, '', flag);
    case 'z': {
      const o = Math.abs(f.offset);
      return (f.offset < 0 ? '-' : '+') + String(Math.floor(o / 60)).padStart(2, '0') + String(o % 60).padStart(2, '0');
    }
    case 'Z':
      return zone_name(f);
    case '%':
      return '%';
    default:
      return undefined;
  }
}

// % [flag] [E|O modifier] conversion
const SPEC = /%([-_0^#]?)([EO]?)(.)/gs;

function expand(format: string, f: Fields, extra: Readonly<Record<string, string>>): string {
  return format.replace(SPEC, (whole, flag: string, _mod: string, c: string) => {
    if (Object.prototype.hasOwnProperty.call(extra, c)) return extra[c]!;
    const out = conv(c, f, flag);
    if (out === undefined) return whole; // unknown conversions stay as written, as glibc does
    return flag === '^' || flag === '#' ? out.toUpperCase() : out;
  });
}

/**
 * Formats `date` (default: now) like strftime(3) in the C locale: `%a %A %b %B %c %C %d %D %e
 * %F %g %G %h %H %I %j %k %l %m %M %n %p %P %r %R %s %S %t %T %u %U %V %w %W %x %X %y %Y %z
 * %Z %%`, glibc's `-` `_` `0` `^` flags, and `E`/`O` modifiers (ignored). Unknown conversions
 * are copied unchanged.
 */
export function strftime(format: string, date: Date = new Date(), opts: StrftimeOptions = {}): string {
  return expand(format, fields(date, opts.utc === true), opts.extra ?? {});
}
