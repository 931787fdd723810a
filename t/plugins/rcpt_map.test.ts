// rcpt_map: the map file and its arguments (qpsmtpd ships no plugin test for it), reloads,
// and SMTP sessions. The map fixture is the example of qpsmtpd's POD.
import { copyFileSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime, REPO } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface RcptMap extends Plugin {
  _domain: string;
  _default: [number, string];
  hook_rcpt(t: unknown, r: Address | undefined): Promise<number | [number, string]>;
  hook_pre_connection(t: unknown, args?: unknown): Promise<number>;
}

const FIXTURE = path.join(REPO, 't', 'fixtures', 'plugins-b', 'map_example_org');

function copy_fixture(): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'qpts-rcptmap-')), 'map');
  copyFileSync(FIXTURE, file);
  return file;
}

async function setup(args: string, extra: string[] = []) {
  const rt = await make_runtime({
    plugins: [`rcpt_map ${args}`, ...extra],
    me: 'mx.example.test',
    rcpthosts: ['example.org', 'example.test'],
    loglevel: '7',
  });
  const views = () => {
    const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
    return { qp, view: qp.plugin_view(rt.runtime.plugins[0]!) as RcptMap };
  };
  return { ...rt, ...views(), views };
}

const addr = (s: string) => Address.parse(s);

describe('rcpt_map: lookups', () => {
  it('listed addresses get their code and message, case-insensitively', async () => {
    const { view, logged } = await setup(`domain Example.ORG file ${FIXTURE}`);
    expect(view._domain).toBe('example.org');
    expect(await view.hook_rcpt(undefined, addr('<me@example.org>'))).toEqual([OK, 'No such user.']);
    expect(await view.hook_rcpt(undefined, addr('<ME@Example.Org>'))).toEqual([OK, 'No such user.']);
    expect(await view.hook_rcpt(undefined, addr('<info@example.org>'))).toEqual([DENY, 'User not found.']);
    expect(await view.hook_rcpt(undefined, addr('<soft@example.org>'))).toEqual([DENYSOFT, 'Try again later.']);
    expect(await view.hook_rcpt(undefined, addr('<bounce@example.org>'))).toEqual([DENY_DISCONNECT, 'No such user.']);
    expect(logged.some((l) => l.endsWith(`rcpt_map: No constant in line 7 in ${FIXTURE}`))).toBe(true);
    expect(logged.some((l) => l.endsWith(`rcpt_map: Not a valid constant in line 8 in ${FIXTURE}`))).toBe(true);
  });

  it('unlisted addresses get the default; other domains and host-less addresses are not checked', async () => {
    const { view } = await setup(`domain example.org file ${FIXTURE}`);
    expect(await view.hook_rcpt(undefined, addr('<nobody@example.org>'))).toEqual([DENY, 'No such user.']);
    expect(await view.hook_rcpt(undefined, addr('<broken@example.org>'))).toEqual([DENY, 'No such user.']);
    expect(await view.hook_rcpt(undefined, addr('<me@example.test>'))).toBe(DECLINED);
    expect(await view.hook_rcpt(undefined, addr('<me@sub.example.org>'))).toBe(DECLINED);
    expect(await view.hook_rcpt(undefined, addr('<postmaster>'))).toBe(DECLINED);
  });

  it('default CODE[=MSG], `_` standing for spaces', async () => {
    const a = await setup(`domain example.org file ${FIXTURE} default DENYSOFT=Mailbox_not_ready,_retry`);
    expect(await a.view.hook_rcpt(undefined, addr('<nobody@example.org>'))).toEqual([DENYSOFT, 'Mailbox not ready, retry']);
    const b = await setup(`domain example.org file ${FIXTURE} default OK`);
    expect(await b.view.hook_rcpt(undefined, addr('<nobody@example.org>'))).toEqual([OK, 'No such user.']);
    const c = await setup(`domain example.org file ${FIXTURE} default DECLINED=`);
    expect(await c.view.hook_rcpt(undefined, addr('<nobody@example.org>'))).toEqual([DECLINED, 'No such user.']);
  });

  it('start-up errors: missing domain or file, unreadable or empty map, bad default, unknown argument', async () => {
    await expect(make_runtime({ plugins: [`rcpt_map file ${FIXTURE}`] })).rejects.toThrow(/plugin rcpt_map: no domain name given/);
    await expect(make_runtime({ plugins: ['rcpt_map domain example.org'] })).rejects.toThrow(/plugin rcpt_map: no map file given/);
    await expect(make_runtime({ plugins: ['rcpt_map domain example.org file /nonexistent/map'] })).rejects.toThrow(/cannot read map file \/nonexistent\/map/);
    const empty = path.join(mkdtempSync(path.join(os.tmpdir(), 'qpts-rcptmap-')), 'empty');
    writeFileSync(empty, '# nothing\nbad@example.org NOPE\n');
    await expect(make_runtime({ plugins: [`rcpt_map domain example.org file ${empty}`] })).rejects.toThrow(/empty map file/);
    await expect(make_runtime({ plugins: [`rcpt_map domain example.org file ${FIXTURE} default REJECT`] })).rejects.toThrow(
      /'REJECT' is not a valid constant for the 'default' argument/,
    );
    await expect(make_runtime({ plugins: [`rcpt_map domain example.org file ${FIXTURE} dfault OK`] })).rejects.toThrow(/unknown argument 'dfault'/);
  });

  it('two instances keep their own maps (qpsmtpd shared one per process)', async () => {
    const other = path.join(mkdtempSync(path.join(os.tmpdir(), 'qpts-rcptmap-')), 'map');
    writeFileSync(other, 'me@example.test DENY Not here.\n');
    const rt = await make_runtime({ plugins: [`rcpt_map:1 domain example.org file ${FIXTURE}`, `rcpt_map:2 domain example.test file ${other}`] });
    const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
    const [one, two] = rt.runtime.plugins.map((p) => qp.plugin_view(p) as RcptMap);
    expect(await one!.hook_rcpt(undefined, addr('<me@example.org>'))).toEqual([OK, 'No such user.']);
    expect(await two!.hook_rcpt(undefined, addr('<me@example.test>'))).toEqual([DENY, 'Not here.']);
  });
});

describe('rcpt_map: reloading', () => {
  it('a changed file is re-read at rcpt, and every session sees the new map', async () => {
    const file = copy_fixture();
    const { view, views } = await setup(`domain example.org file ${file}`);
    expect(await view.hook_rcpt(undefined, addr('<new@example.org>'))).toEqual([DENY, 'No such user.']);
    writeFileSync(file, 'new@example.org OK\nme@example.org DENY Gone.\n');
    expect(await view.hook_rcpt(undefined, addr('<new@example.org>'))).toEqual([OK, 'No such user.']);
    const other = views().view;
    expect(await other.hook_rcpt(undefined, addr('<me@example.org>'))).toEqual([DENY, 'Gone.']);
  });

  it('pre-connection re-reads a changed file (as in the daemon master)', async () => {
    const file = copy_fixture();
    const { view, views } = await setup(`domain example.org file ${file}`);
    writeFileSync(file, 'me@example.org DENYSOFT Later.\n');
    const future = new Date(Date.now() + 60_000);
    utimesSync(file, future, future);
    expect(await view.hook_pre_connection(undefined, { remote_ip: '192.0.2.1' })).toBe(DECLINED);
    // another session sees it without stat'ing: poke the file state to prove the map is shared
    const v2 = views().view as RcptMap & { _state: { map: Map<string, unknown> } };
    expect(v2._state.map.get('me@example.org')).toEqual([DENYSOFT, 'Later.']);
  });

  it('an unusable new version is logged and the old map stays', async () => {
    const file = copy_fixture();
    const { view, logged } = await setup(`domain example.org file ${file}`);
    writeFileSync(file, '# emptied by mistake\n');
    expect(await view.hook_rcpt(undefined, addr('<me@example.org>'))).toEqual([OK, 'No such user.']);
    expect(logged.some((l) => l.includes(`map file ${file} has no valid line; keeping the loaded map`))).toBe(true);
  });
});

describe('rcpt_map: SMTP session', () => {
  it('accepts listed users, refuses others of the domain, leaves other domains alone', async () => {
    const { runtime } = await setup(`domain example.org file ${FIXTURE} default DENY=No_such_user_here.`, ['rcpt_ok']);
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    await client.cmd('MAIL FROM:<a@example.net>');
    expect(await client.cmd('RCPT TO:<you@example.org>')).toMatchObject({ code: 250, text: '<you@example.org>, recipient ok' });
    expect(await client.cmd('RCPT TO:<info@example.org>')).toMatchObject({ code: 550, text: 'User not found.' });
    expect(await client.cmd('RCPT TO:<soft@example.org>')).toMatchObject({ code: 450, text: 'Try again later.' });
    expect(await client.cmd('RCPT TO:<who@example.org>')).toMatchObject({ code: 550, text: 'No such user here.' });
    expect(await client.cmd('RCPT TO:<who@example.test>')).toMatchObject({ code: 250 }); // rcpt_ok decides
    await client.cmd('QUIT');
    await done;
  });
});
