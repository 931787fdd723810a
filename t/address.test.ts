// Qpsmtpd::Address: every case of qpsmtpd's t/qpsmtpd-address.t, the "Verified outcomes" of
// qpsmtpd.md 4.3, the address rows of 3.5 and reliability.md 2.9, and our hardening.
// Where we deliberately differ from qpsmtpd a comment names qpsmtpd's outcome.

import { describe, expect, it } from 'vitest';
import * as mod from '../lib/address.js';
import { Address, canonify, type AddressHost } from '../lib/address.js';

const fmt = (s: string, smtputf8 = false) => Address.parse(s, { smtputf8 })?.format();

describe('t/qpsmtpd-address.t __new', () => {
  it('sorts via cmp: by domain, then user', () => {
    const unsorted = [
      '"musa_ibrah@caramail.comandrea.luger"@wifo.ac.at',
      'foo@example.com',
      'ask@perl.org',
      'foo@foo.x.example.com',
      'jpeacock@cpan.org',
      'test@example.com',
    ].map((s) => Address.parse(s)!);
    const sorted = [
      'jpeacock@cpan.org',
      'foo@example.com',
      'test@example.com',
      'foo@foo.x.example.com',
      'ask@perl.org',
      '"musa_ibrah@caramail.comandrea.luger"@wifo.ac.at',
    ].map((s) => Address.parse(s)!);
    expect(Address.sort(unsorted).map(String)).toEqual(sorted.map(String));
    expect([...unsorted].sort(Address.cmp)).toEqual(sorted);
  });

  it('RT#38746: <user@example.com#> is illegal', () => {
    expect(Address.parse('<user@example.com#>')).toBeUndefined();
  });

  it('parse(undefined) is the null address', () => {
    for (const a of [Address.parse(undefined), Address.parse(null), Address.parse(), new Address()]) {
      expect(String(a)).toBe('<>');
      expect(a!.format()).toBe('<>');
      expect(a!.user()).toBeUndefined();
      expect(a!.host()).toBeUndefined();
    }
  });

  it('<matt@test.com>', () => {
    const a = Address.parse('<matt@test.com>')!;
    expect(String(a)).toBe('<matt@test.com>');
    expect(a.format()).toBe('<matt@test.com>');
    expect([a.user(), a.host()]).toEqual(['matt', 'test.com']);
  });

  it("new('postmaster') (bare, no @) has no user or host and formats as <>", () => {
    for (const a of [Address.parse('postmaster')!, new Address('postmaster')]) {
      expect(String(a)).toBe('<>');
      expect(a.format()).toBe('<>');
      expect([a.user(), a.host()]).toEqual([undefined, undefined]);
    }
  });
});

describe('t/qpsmtpd-address.t __parse', () => {
  it('<>', () => {
    const a = Address.parse('<>')!;
    expect(a).toBeDefined();
    expect(a.format()).toBe('<>');
    expect([a.user(), a.host()]).toEqual(['', undefined]);
  });

  it('<postmaster>', () => {
    expect(fmt('<postmaster>')).toBe('<postmaster>');
  });

  it('<foo@example.com>', () => {
    const a = Address.parse('<foo@example.com>')!;
    expect(a.format()).toBe('<foo@example.com>');
    expect(a.user()).toBe('foo');
    expect(a.host()).toBe('example.com');
  });

  it('quoted local part with @ is re-quoted with every non-dot-string char escaped', () => {
    expect(fmt('<"musa_ibrah@caramail.comandrea.luger"@wifo.ac.at>')).toBe(
      '<"musa_ibrah\\@caramail.comandrea.luger"@wifo.ac.at>',
    );
  });

  it('<foo bar@example.com> is refused; the quoted form is accepted', () => {
    // qpsmtpd: accepted, formats as <"foo\ bar"@example.com>.
    expect(Address.parse('<foo bar@example.com>')).toBeUndefined();
    expect(fmt('<"foo bar"@example.com>')).toBe('<"foo\\ bar"@example.com>');
  });

  it('bare foo@example.com', () => {
    const a = Address.parse('foo@example.com')!;
    expect(a.address()).toBe('foo@example.com');
  });

  it('address() of <foo@example.com>', () => {
    expect(Address.parse('<foo@example.com>')!.address()).toBe('foo@example.com');
  });

  it('<foo@foo.x.example.com> round trips; address() can reset the value', () => {
    expect(fmt('<foo@foo.x.example.com>')).toBe('<foo@foo.x.example.com>');
    const a = Address.parse('<foo@foo.x.example.com>')!;
    expect(a.address()).toBe('foo@foo.x.example.com');
    expect(a.address('test@example.com')).toBe('test@example.com');
    expect(a.format()).toBe('<test@example.com>');
  });

  it('stringifies via format and compares equal to a bare string', () => {
    const a = Address.parse('<foo@foo.x.example.com>')!;
    expect(`${a}`).toBe('<foo@foo.x.example.com>');
    expect(a.equals('foo@foo.x.example.com')).toBe(true);
    expect(a.equals('<foo@foo.x.example.com>')).toBe(true);
    expect(a.equals(Address.parse('<bar@foo.x.example.com>'))).toBe(false);
  });
});

describe('t/qpsmtpd-address.t __config', () => {
  // Test::Qpsmtpd's user_config behaviour, reduced to what Address relies on: it hands
  // (name, itself) to qp.config, which runs user_config hooks and then the global config.
  function host(userConfig: ((name: string) => string | undefined) | undefined): AddressHost & { seen: unknown[] } {
    const global: Record<string, string> = { size_threshold: '10000' };
    const seen: unknown[] = [];
    return {
      seen,
      config(name, addr) {
        seen.push(addr);
        return userConfig?.(name) ?? global[name];
      },
    };
  }

  it('no qp: nothing', () => {
    expect(Address.parse('<test@example.com>')!.config('size_threshold')).toBeUndefined();
  });

  const declined = (): string | undefined => undefined;
  const answers = (): string | undefined => 'test value';
  it.each([
    ['fall back to global config when user_config is absent', 'size_threshold', undefined, '10000'],
    ['return nothing when no user_config plugins exist', 'test_config', undefined, undefined],
    ['return nothing when user_config plugins return DECLINED', 'test_config', declined, undefined],
    ['return results when user_config plugin returns a value', 'test_config', answers, 'test value'],
  ] as const)('%s', (_d, pref, uc, expected) => {
    const sender = Address.parse('<test@example.com>')!;
    const qp = host(uc);
    expect(sender.qp(qp)).toBe(qp);
    expect(sender.config(pref)).toBe(expected);
    expect(qp.seen).toEqual([sender]);
  });
});

describe('t/qpsmtpd-address.t __canonify', () => {
  it('no overridable regex variables', () => {
    // qpsmtpd: $domain_expr undef, $subdomain_expr set, both overridable. We offer neither.
    expect('domain_expr' in mod).toBe(false);
    expect('subdomain_expr' in mod).toBe(false);
    expect(Address.parse('foo@x.example.com')!.host()).toBe('x.example.com');
  });

  it.each([
    ['sample@path', [undefined, undefined, 'missing delimiters']],
    ['', [undefined, undefined, 'missing delimiters']],
    ['<postmaster>', ['postmaster', undefined, 'bare postmaster']],
    ['<postmaster@test>', ['postmaster', 'test', 'local matches atom']],
    ['<@a:postmaster@test>', ['postmaster', 'test', 'local matches atom']],
    ['<@192.168.1.1>', [undefined, undefined, 'fall through']],
  ])('canonify(%j)', (path, expected) => {
    expect(canonify(path)).toEqual(expected);
    expect(Address.canonify(path)).toEqual(expected);
  });

  it('<postmáster@test> needs SMTPUTF8', () => {
    // qpsmtpd: ['postmáster', 'test', 'local matches atom'] always.
    expect(canonify('<postmáster@test>')).toEqual([undefined, undefined, 'invalid character']);
    expect(canonify('<postmáster@test>', { smtputf8: true })).toEqual(['postmáster', 'test', 'local matches atom']);
  });
});

describe('qpsmtpd.md 4.3 verified outcomes', () => {
  const ok = (s: string, user: string, host: string | undefined, format?: string) => {
    const a = Address.parse(s);
    expect(a, s).toBeDefined();
    expect([a!.user(), a!.host()]).toEqual([user, host]);
    if (format !== undefined) expect(a!.format()).toBe(format);
  };

  it('<a@b#c> is refused', () => {
    // qpsmtpd: a / b#c / <a@b#c> (any character separated labels).
    expect(Address.parse('<a@b#c>')).toBeUndefined();
    expect(canonify('<a@b#c>')).toEqual([undefined, undefined, undefined]);
  });

  it('<a@b_c.d>', () => ok('<a@b_c.d>', 'a', 'b_c.d', '<a@b_c.d>'));

  it.each([
    '<a@b..c>',
    '<a@-b.c>',
    '<a@b-.c>',
    '<.a@b.c>',
    '<abuse>',
    '<user@example.com#>',
    '<@192.168.1.1>',
    '<matt@>',
    '<@example.com>',
  ])('%s is refused', (s) => {
    expect(Address.parse(s)).toBeUndefined();
  });

  it('<"a b"@c> is accepted', () => {
    // qpsmtpd: undef (no space allowed in its qtext).
    ok('<"a b"@c>', 'a b', 'c', '<"a\\ b"@c>');
  });

  it('<a@1.2.3.4>', () => ok('<a@1.2.3.4>', 'a', '1.2.3.4', '<a@1.2.3.4>'));

  it('<a@[1.2.3.999]> is refused', () => {
    // qpsmtpd: a / [1.2.3.999] (octets not range-checked).
    expect(Address.parse('<a@[1.2.3.999]>')).toBeUndefined();
  });

  it('<a@[IPv6:::1]>', () => ok('<a@[IPv6:::1]>', 'a', '[IPv6:::1]', '<a@[IPv6:::1]>'));

  it('<a.@b.c> and <a..b@c.d> are accepted verbatim', () => {
    ok('<a.@b.c>', 'a.', 'b.c', '<a.@b.c>');
    ok('<a..b@c.d>', 'a..b', 'c.d', '<a..b@c.d>');
  });

  it('<"a\\"b"@c.d>', () => {
    ok('<"a\\"b"@c.d>', 'a"b', 'c.d', '<"a\\"b"@c.d>');
    expect(canonify('<"a\\"b"@c.d>')).toEqual(['a"b', 'c.d', undefined]);
  });

  it('<Postmaster>', () => ok('<Postmaster>', 'postmaster', undefined, '<postmaster>'));
  it('<@a,@b:c@d>', () => ok('<@a,@b:c@d>', 'c', 'd', '<c@d>'));
  it('<@a:postmaster>', () => ok('<@a:postmaster>', 'postmaster', undefined, '<postmaster>'));

  it('<a(b)@c> is refused', () => {
    // qpsmtpd: a(b) / c / <"a\(b\)"@c>.
    expect(Address.parse('<a(b)@c>')).toBeUndefined();
    expect(canonify('<a(b)@c>')).toEqual([undefined, undefined, 'fall through']);
    ok('<"a(b)"@c>', 'a(b)', 'c', '<"a\\(b\\)"@c>');
  });

  it('<foo bar@example.com> is refused', () => {
    // qpsmtpd: foo bar / <"foo\ bar"@example.com>.
    expect(Address.parse('<foo bar@example.com>')).toBeUndefined();
  });

  it('"musa…"@wifo.ac.at', () => {
    expect(fmt('<"musa_ibrah@caramail.comandrea.luger"@wifo.ac.at>')).toBe(
      '<"musa_ibrah\\@caramail.comandrea.luger"@wifo.ac.at>',
    );
  });
});

describe('qpsmtpd.md 3.5 addresses as seen on the wire', () => {
  it('case is preserved', () => expect(fmt('<A@B.TEST>')).toBe('<A@B.TEST>'));
  it('<a b@c.test> is refused', () => {
    // qpsmtpd: 250 <"a\ b"@c.test>.
    expect(Address.parse('<a b@c.test>')).toBeUndefined();
  });
  it('<"a b"@c.test> is accepted', () => {
    // qpsmtpd: 501 could not parse your mail from command.
    expect(fmt('<"a b"@c.test>')).toBe('<"a\\ b"@c.test>');
  });
  it('source route is dropped', () => expect(fmt('<@r1.test,@r2.test:u@c.test>')).toBe('<u@c.test>'));
  it('<u@[1.2.3.4]>', () => expect(fmt('<u@[1.2.3.4]>')).toBe('<u@[1.2.3.4]>'));
  it('<u@c.test.> is refused', () => expect(Address.parse('<u@c.test.>')).toBeUndefined());
  it('<u@b@c.test> is refused', () => {
    // qpsmtpd: 250 <"u\@b"@c.test>.
    expect(Address.parse('<u@b@c.test>')).toBeUndefined();
    expect(fmt('<"u@b"@c.test>')).toBe('<"u\\@b"@c.test>');
  });
  it('<u@c_d.test>', () => expect(fmt('<u@c_d.test>')).toBe('<u@c_d.test>'));
  it('<x@example.test (no closing bracket) is bare text, not canonified', () => {
    expect(canonify('<x@example.test')).toEqual([undefined, undefined, 'missing delimiters']);
    const a = Address.parse('<x@example.test')!;
    expect([a.user(), a.host()]).toEqual(['<x', 'example.test']);
  });
  it('bare abuse / someone have no user', () => {
    expect(Address.parse('abuse')!.format()).toBe('<>');
    expect(Address.parse('someone')!.user()).toBeUndefined();
  });
});

describe('reliability.md 2.9 address probes', () => {
  it.each([
    ['<>', '<>'],
    ['<@relay.test:a@example.test>', '<a@example.test>'],
    ['<a@[127.0.0.1]>', '<a@[127.0.0.1]>'],
    ['<a@[IPv6:::1]>', '<a@[IPv6:::1]>'],
    ['<"a b"@example.test>', '<"a\\ b"@example.test>'],
    ['<postmaster>', '<postmaster>'],
    ['<PostMaster>', '<postmaster>'],
    ['<r@LOCAL.TEST>', '<r@LOCAL.TEST>'],
  ])('%s accepted', (s, f) => expect(fmt(s)).toBe(f));

  it.each(['<a@b@example.test>', '<a@[999.1.1.1]>'])('%s refused', (s) => {
    expect(Address.parse(s)).toBeUndefined();
  });

  const probes: [string, string, boolean][] = [
    ['a.*2000', '<' + 'a.'.repeat(2000) + 'a@example.test>', true],
    ['"*400', '<' + '"'.repeat(400) + '@example.test>', false],
    ['(*400', '<' + '('.repeat(400) + 'a@example.test>', false],
    ['a@*200', '<' + 'a@'.repeat(200) + 'local.test>', false],
    // Our own worst cases for each pattern, at 100 times the line limit.
    ['label runs', '<a@' + 'a-_'.repeat(20000) + '!>', false],
    ['many labels', '<a@' + 'a.'.repeat(20000) + '>', false],
    ['route', '<' + '@a,'.repeat(20000) + 'x@y>', false],
    ['quoted pairs', '<"' + '\\a'.repeat(20000) + '\\"@x>', false],
    ['dots', '<' + '.'.repeat(50000) + '@x>', false],
    ['ipv6', '<a@[IPv6:' + ':'.repeat(50000) + '>', false],
  ];
  it.each(probes)('ReDoS probe %s', (_n, s, accepted) => {
    for (const smtputf8 of [false, true]) {
      const t0 = performance.now();
      const a = Address.parse(s, { smtputf8 });
      expect(performance.now() - t0).toBeLessThan(200);
      expect(a !== undefined).toBe(accepted);
    }
  });
});

describe('hardening', () => {
  it.each(['\r', '\n', '\r\n', '\0', '\t', '\x7f', '\x1b'])('control %j anywhere is refused', (c) => {
    for (const s of [`<a${c}b@c.test>`, `<ab@c${c}.test>`, `<"a${c}b"@c.test>`, `<${c}@a:b@c.test>`, `<postmaster${c}>`]) {
      expect(canonify(s)).toEqual([undefined, undefined, 'invalid character']);
      expect(canonify(s, { smtputf8: true })).toEqual([undefined, undefined, 'invalid character']);
      expect(Address.parse(s)).toBeUndefined();
    }
    // bare text too (qpsmtpd split it without looking)
    expect(Address.parse(`a${c}b@c.test`)).toBeUndefined();
  });

  it('quoted pairs must be printable ASCII', () => {
    expect(Address.parse('<"a\\\rb"@c>')).toBeUndefined();
    expect(fmt('<"a\\ b"@c>')).toBe('<"a\\ b"@c>');
    expect(fmt('<"a\\\\b"@c>')).toBe('<"a\\\\b"@c>');
    expect(Address.parse('<"a"b"@c>')).toBeUndefined();
  });

  it('unquoted local parts are atext and dots only', () => {
    for (const s of ['<a"b@c>', '<a\\b@c>', '<a,b@c>', '<a;b@c>', '<a[b]@c>', '<a<b@c>', '<a:b@c>']) {
      expect(Address.parse(s), s).toBeUndefined();
    }
    expect(fmt("<!#$%&'*+-/=?^_`{|}~@c>")).toBe("<!#$%&'*+-/=?^_`{|}~@c>");
    expect(fmt('<"a.b"@c>')).toBe('<a.b@c>');
  });

  it('domains: literal dots, inner - and _ only', () => {
    for (const d of ['b#c', 'b c', '_b.c', 'b_.c', 'b.-c', '.b', 'b.', 'b,c', 'b..c', '[1.2.3]', '[foo:bar]', '[ipv6:::1]']) {
      expect(Address.parse(`<a@${d}>`), d).toBeUndefined();
    }
    for (const d of ['b', 'b-c', 'b--c', 'b__c', 'b-_c.d', '123', 'B.C', 'xn--bcher-kva.example']) {
      expect(Address.parse(`<a@${d}>`)?.host(), d).toBe(d);
    }
  });

  it('address literals are validated', () => {
    for (const l of ['[0.0.0.0]', '[255.255.255.255]', '[IPv6:2001:db8::1]', '[IPv6:::ffff:1.2.3.4]', '[IPv6:1:2:3:4:5:6:7:8]']) {
      expect(Address.parse(`<a@${l}>`)?.host(), l).toBe(l);
    }
    for (const l of ['[256.1.1.1]', '[1.2.3.4.5]', '[IPv6:1:2:3:4:5:6:7:8:9]', '[IPv6:1::2::3]', '[IPv6:::1.2.3.999]', '[IPv6:12345::]', '[IPv6:]']) {
      expect(Address.parse(`<a@${l}>`), l).toBeUndefined();
    }
    // a source route with a bad literal is not stripped, so the path is refused
    expect(Address.parse('<@[1.2.3.999]:a@b.c>')).toBeUndefined();
    expect(fmt('<@[IPv6:::1],@[1.2.3.4]:a@b.c>')).toBe('<a@b.c>');
  });

  it('SMTPUTF8 off: non-ASCII refused; on: allowed in local part and labels', () => {
    for (const s of ['<jöran@example.test>', '<a@bücher.example>', '<"jö ran"@example.test>', '<a@b.c\u00a0>']) {
      expect(canonify(s)[2], s).toBe('invalid character');
    }
    expect(fmt('<jöran@bücher.example>', true)).toBe('<jöran@bücher.example>');
    expect(fmt('<用户@例子.广告>', true)).toBe('<用户@例子.广告>');
    expect(fmt('<"jö ran"@example.test>', true)).toBe('<"jö\\ ran"@example.test>');
    // still refused with SMTPUTF8: controls (C0, C1), line separators, lone surrogates, bad labels
    for (const s of ['<a\u0085b@c>', '<a\u2028b@c>', '<a\ud800b@c>', '<a@-ü.c>', '<a@ü..c>']) {
      expect(Address.parse(s, { smtputf8: true }), JSON.stringify(s)).toBeUndefined();
    }
  });
});

describe('accessors', () => {
  it('new(user, host) stores as given', () => {
    const a = new Address('foo bar', 'example.com');
    expect([a.user(), a.host()]).toEqual(['foo bar', 'example.com']);
    expect(a.format()).toBe('<"foo\\ bar"@example.com>');
    expect(a.address()).toBe('foo bar@example.com');
  });

  it('new(text) reads like parse and throws where qpsmtpd returned undef', () => {
    expect(new Address('<a@b.c>').format()).toBe('<a@b.c>');
    expect(new Address('a@b@c').format()).toBe('<"a\\@b"@c>');
    expect(() => new Address('<a b@c>')).toThrow(TypeError);
  });

  it('user/host setters ignore undefined', () => {
    const a = Address.parse('<a@b.c>')!;
    expect(a.user('x')).toBe('x');
    expect(a.host('y.z')).toBe('y.z');
    expect(a.user(undefined)).toBe('x');
    expect(a.host()).toBe('y.z');
    expect(a.format()).toBe('<x@y.z>');
  });

  it('address(v) re-canonifies, leaving user/host undefined on failure', () => {
    const a = Address.parse('<a@b.c>')!;
    expect(a.address('<x@y.z>')).toBe('x@y.z');
    expect(a.address('a b@c')).toBe('');
    expect([a.user(), a.host()]).toEqual([undefined, undefined]);
    expect(a.format()).toBe('<>');
    expect(a.address('postmaster')).toBe('postmaster');
    expect(a.address('<>')).toBe(''); // wrapped again as <<>> and refused, as qpsmtpd
    expect(a.user()).toBeUndefined();
    expect(a.address('jö@x', { smtputf8: true })).toBe('jö@x');
  });

  it('notes store undefined explicitly', () => {
    const a = Address.parse('<a@b.c>')!;
    expect(a.notes('k')).toBeUndefined();
    expect(a.notes('k', 1)).toBe(1);
    expect(a.notes('k')).toBe(1);
    expect(a.notes('k', undefined)).toBeUndefined();
    expect(a.notes('k')).toBeUndefined();
    expect(a.notes('__proto__', 'x')).toBe('x');
  });

  it('qp can be set and cleared', () => {
    const a = Address.parse('<a@b.c>')!;
    const qp: AddressHost = { config: () => 'v' };
    expect(a.qp()).toBeUndefined();
    a.qp(qp);
    expect(a.config('x')).toBe('v');
    a.qp(undefined);
    expect(a.qp()).toBeUndefined();
  });

  it('empty quoted local part formats as qpsmtpd does', () => {
    expect(canonify('<""@c.test>')).toEqual(['', 'c.test', undefined]);
    expect(fmt('<""@c.test>')).toBe('<@c.test>');
  });

  it('cmp orders by domain then user; null address first; unparseable strings by raw text', () => {
    const n = Address.parse('<>')!;
    expect(Address.cmp(n, '<a@b>')).toBe(-1);
    expect(Address.cmp('<a@b>', n)).toBe(1);
    expect(n.equals(undefined)).toBe(true);
    expect(n.equals('<bad bad>')).toBe(false);
    expect(Address.cmp('<z@a.test>', '<a@b.test>')).toBe(-1);
    expect(Address.parse('<a@b>')!.equals('<a@B>')).toBe(false); // string compare, as qpsmtpd
  });
});
