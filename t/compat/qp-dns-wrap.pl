#!/usr/bin/perl -Tw
# qp-dns-wrap.pl DNS_PORT SCRIPT ARGS...
#
# Starts Debian's qpsmtpd 0.94 daemon SCRIPT (qpsmtpd-forkserver) with every
# Net::DNS::Resolver it creates bound to the loopback DNS stub of the differential
# test (127.0.0.1:DNS_PORT), so the per-connection PTR lookup never leaves the machine.
#
# Why a wrapper: the daemon runs under perl -T, where the RES_NAMESERVERS /
# RES_OPTIONS environment variables are tainted and make Net::DNS die. Here the
# constructor is wrapped instead: each new resolver is re-pointed before use.
use strict;
use Net::DNS;

my ($port) = (shift(@ARGV) // '') =~ /^(\d{1,5})$/
  or die "usage: qp-dns-wrap.pl DNS_PORT /usr/bin/qpsmtpd-forkserver ARGS...\n";
my ($script) = (shift(@ARGV) // '') =~ m{^(/usr/(?:s?bin|local/s?bin)/qpsmtpd-(?:forkserver|prefork))$}
  or die "qp-dns-wrap.pl: only qpsmtpd-forkserver or qpsmtpd-prefork may be run\n";

delete @ENV{qw(RES_NAMESERVERS RES_OPTIONS RES_SEARCHLIST LOCALDOMAIN ENV BASH_ENV)};

my $base_new = Net::DNS::Resolver->can('new');
{
    no warnings qw(redefine once);
    *Net::DNS::Resolver::new = sub {
        my $res = $base_new->(@_);
        $res->nameservers('127.0.0.1');
        $res->port($port);
        $res->srcaddr('127.0.0.1');
        $res->searchlist();
        $res->retry(1);
        $res->retrans(1);
        return $res;
    };
}

# prove the override holds before handing over
my $probe = Net::DNS::Resolver->new(dnsrch => 0);
my @ns = $probe->nameservers;
die "qp-dns-wrap.pl: resolver not redirected (@ns port " . $probe->port . ")\n"
  unless "@ns" eq '127.0.0.1' && $probe->port == $port;

$0 = $script;
my $rv = do $script;
die "qp-dns-wrap.pl: $script: $@" if $@;
die "qp-dns-wrap.pl: $script: $!" unless defined $rv;
exit 0;
