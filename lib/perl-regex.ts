// Perl regular expressions from config files (badhelo, badmailfrom, badrcptto, rcpt_regexp)
// compiled as JS RegExps, with a compile cache keyed by the pattern text.

const compiled = new Map<string, RegExp | Error>();

/** A Perl pattern as a JS RegExp (`\A`, `\z`, `\Z`, leading `(?i)` translated); throws if invalid. */
export function perl_regex(src: string, flags = ''): RegExp {
  const key = `${flags}/${src}`;
  let re = compiled.get(key);
  if (!re) {
    try {
      let s = src;
      let f = flags;
      const m = /^\(\?([a-z]+)\)/.exec(s);
      if (m) {
        if (!/^i+$/.test(m[1]!)) throw new Error(`unsupported inline modifier (?${m[1]})`);
        if (!f.includes('i')) f += 'i';
        s = s.slice(m[0].length);
      }
      let out = '';
      for (let i = 0; i < s.length; i++) {
        const c = s[i]!;
        if (c === '\\' && i + 1 < s.length) {
          const n = s[i + 1]!;
          out += n === 'A' ? '^' : n === 'z' || n === 'Z' ? '$' : c + n;
          i++;
        } else out += c;
      }
      re = new RegExp(out, f);
    } catch (e) {
      re = e instanceof Error ? e : new Error(String(e));
    }
    if (compiled.size > 1000) compiled.clear();
    compiled.set(key, re);
  }
  if (re instanceof Error) throw re;
  return re;
}
