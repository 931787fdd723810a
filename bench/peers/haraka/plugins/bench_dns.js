// bench_dns: points this Haraka process's resolver (node:dns, used by Haraka's own rDNS lookup
// of every client) at the benchmark's loopback DNS stub, 127.0.0.1:$BENCH_DNS_PORT.
// Benchmarks only; must be the first plugin listed.
'use strict'
const dns = require('node:dns')

exports.register = function () {
    const port = Number(process.env.BENCH_DNS_PORT)
    if (!port) throw new Error('bench_dns: BENCH_DNS_PORT is not set')
    dns.setServers([`127.0.0.1:${port}`])
    const got = dns.getServers()
    if (got.length !== 1 || got[0] !== `127.0.0.1:${port}`) throw new Error(`bench_dns: setServers did not take: ${got}`)
}
