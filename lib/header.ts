// Mail::Header (MailTools 2.21) as qpsmtpd builds it: `Modify => 0, MailFrom => 'COERCE'`.
// Lines are stored verbatim (binary strings, each ending in "\n"); tags match case-insensitively.

const FIELD_NAME = /^[^\x00-\x1f\x7f-\xff :]+:/;
const TAG = /^[^\x00-\x1f\x7f-\xff :]+:?$/;
/** Perl's \s / \S on byte strings (JS \s would also take NBSP and Unicode spaces). */
const LEADING_WS = /^[ \t\n\r\f\v]+/;
const BAD_CONTINUATION = /\n[^ \t\n\r\f\v]/;

interface Field {
  key: string; // lower-cased tag without the colon
  line: string;
}

/** `s` ending in exactly one newline (a regex `\n*$` rescans from every position). */
function one_newline(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 10) end--;
  return end === s.length ? s + '\n' : end === s.length - 1 ? s : s.slice(0, end) + '\n';
}

const keyOf = (tag: string): string => tag.replace(/:$/, '').toLowerCase();

/** Mail::Header's preferred spelling of a tag, as its `tags` reports it. */
function tagCase(tag: string): string {
  return tag
    .replace(/:$/, '')
    .split('-')
    .map((w) =>
      /^[b-df-hj-np-tv-z]+$|^(?:MIME|SWE|SOAP|LDAP|ID)$/i.test(w)
        ? w.toUpperCase()
        : w.charAt(0).toUpperCase() + w.slice(1).toLowerCase(),
    )
    .join('-');
}

function splitLines(s: string): string[] {
  return s.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

export class MailHeader {
  private fields: Field[] = [];

  /**
   * Mail::Header `extract`: stops at the first line that is empty or "\r"; a header starts with
   * a field name and colon, or with `From ` (case-sensitive, as in MailTools), which becomes
   * `Mail-From: `; lines starting with space/tab continue it; any other line is dropped with
   * its continuation lines.
   */
  static parse(input: string[] | string): MailHeader {
    const lines = typeof input === 'string' ? splitLines(input) : input;
    const h = new MailHeader();
    for (let i = 0; i < lines.length; ) {
      let line = lines[i++]!;
      if (/^\r?\n?$/.test(line)) break;
      const m = FIELD_NAME.exec(line) ?? /^From /.exec(line);
      if (!m) continue;
      while (i < lines.length && /^[ \t]/.test(lines[i]!)) line += lines[i++];
      let tag = m[0];
      if (tag === 'From ') {
        line = 'Mail-From: ' + line.slice(5);
        tag = 'Mail-From:';
      }
      // Mail::Header warns and skips such a field; it can only come from a caller-built array.
      if (BAD_CONTINUATION.test(line)) continue;
      h.fields.push({ key: keyOf(tag), line: one_newline(line) });
    }
    return h;
  }

  /** Value of the index-th (default first; negative counts from the end) `tag` field. */
  get(tag: string, index = 0): string | undefined {
    const f = this.matching(tag).at(index);
    return f && valueOf(f);
  }

  get_all(tag: string): string[] {
    return this.matching(tag).map(valueOf);
  }

  count(tag: string): number {
    return this.matching(tag).length;
  }

  /**
   * Inserts `tag: value` at position `index` of the whole header (0 = first line; negative
   * counts from the end, -1 = append, the default). Returns the stored value.
   */
  add(tag: string, value: string, index = -1): string {
    const f = makeField(tag, value);
    const n = this.fields.length;
    const where = index < 0 ? Math.max(0, n + index + 1) : Math.min(index, n);
    this.fields.splice(where, 0, f);
    return valueOf(f);
  }

  /** Replaces the index-th (default first) `tag` field in place, or appends one if there is none. */
  replace(tag: string, value: string, index = 0): string {
    const f = makeField(tag, value);
    const old = this.matching(tag).at(index);
    if (old) old.line = f.line;
    else this.fields.push(f);
    return valueOf(f);
  }

  /** Removes the index-th `tag` field, or all of them without an index; returns the removed values. */
  delete(tag: string, index?: number): string[] {
    const all = this.matching(tag);
    const one = index === undefined ? undefined : all.at(index);
    const gone = index === undefined ? all : one ? [one] : [];
    this.fields = this.fields.filter((f) => !gone.includes(f));
    return gone.map(valueOf);
  }

  /** Each tag once, in Mail::Header's spelling (`Content-Type`, `MIME-Version`), first-seen order. */
  tags(): string[] {
    return [...new Set(this.fields.map((f) => f.key))].map(tagCase);
  }

  as_string(): string {
    return this.fields.map((f) => f.line).join('');
  }

  header(): string[] {
    return this.fields.map((f) => f.line);
  }

  dup(): MailHeader {
    const d = new MailHeader();
    d.fields = this.fields.map((f) => ({ ...f }));
    return d;
  }

  private matching(tag: string): Field[] {
    const k = keyOf(tag);
    return this.fields.filter((f) => f.key === k);
  }
}

/**
 * Mail::Header's `get` text (everything after "Tag:", leading whitespace removed) minus the
 * trailing newline it keeps; folding inside the value stays as stored.
 */
function valueOf(f: Field): string {
  return f.line
    .slice(f.line.indexOf(':') + 1)
    .replace(LEADING_WS, '')
    .replace(/\n$/, '');
}

function makeField(tag: string, value: string): Field {
  if (!TAG.test(tag)) throw new Error(`Bad RFC822 field name '${tag}'`);
  const ctag = tag.endsWith(':') ? tag : tag + ':';
  // As Mail::Header with Modify => 0: a value that already starts with the tag is kept as is.
  let line = value.toLowerCase().startsWith(ctag.toLowerCase())
    ? value
    : `${ctag} ${value.replace(LEADING_WS, '')}`;
  line = one_newline(line);
  // Stricter than Mail::Header (which only refuses "\n" + non-space): every inner line break
  // must be a fold, so no value can end the header or start a new field.
  if (/\n(?![ \t])/.test(line.slice(0, -1)) || /\r(?!\n)/.test(line)) {
    throw new Error(`Bad header continuation in '${ctag.slice(0, -1)}': no space after newline`);
  }
  return { key: keyOf(ctag), line };
}
