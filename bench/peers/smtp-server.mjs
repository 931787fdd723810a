#!/usr/bin/env node
// nodemailer's smtp-server as a benchmark peer: accepts mail for one domain, refuses the rest
// (550 relaying denied), discards every accepted message after reading it.
//
//   node bench/peers/smtp-server.mjs PORT DNS_PORT DOMAIN
//
// Its reverse lookup of each client goes to the loopback DNS stub (the `resolver` option).
// Note: smtp-server waits a fixed 100 ms after accepting before it greets (to catch early
// talkers); 3.21 has no option to change it, so it is measured as shipped.
import { Resolver } from 'node:dns';
import { SMTPServer } from 'smtp-server';

const [port, dns_port, domain] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
if (!port || !dns_port || !domain) throw new Error('usage: smtp-server.mjs PORT DNS_PORT DOMAIN');
const resolver = new Resolver({ timeout: 2000, tries: 1 });
resolver.setServers([`127.0.0.1:${dns_port}`]);

const server = new SMTPServer({
  name: 'bench.smtp-server',
  logger: false,
  resolver,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  size: 52428800,
  onRcptTo(address, _session, cb) {
    const at = address.address.lastIndexOf('@');
    if (at > 0 && address.address.slice(at + 1).toLowerCase() === domain) return cb();
    const err = new Error('relaying denied');
    err.responseCode = 550;
    cb(err);
  },
  onData(stream, _session, cb) {
    stream.on('data', () => {});
    stream.on('end', () => cb(null, 'Queued (discarded)'));
  },
});
server.on('error', (e) => process.stderr.write(`smtp-server: ${e.message}\n`));
server.listen(port, '127.0.0.1', () => process.stderr.write(`smtp-server listening on 127.0.0.1:${port}\n`));
process.on('SIGTERM', () => {
  setTimeout(() => process.exit(0), 2000).unref();
  server.close(() => process.exit(0));
});
process.on('SIGINT', () => process.exit(0));
