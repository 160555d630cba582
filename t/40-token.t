#!/usr/bin/perl

# The token stage of a job against the Google emulator and the control
# plane: one refresh per integration across all workers, refresh on expiry,
# revoked credentials to the DLQ with a reauthorization request, transient
# failures retried with backoff (Retry-After honoured), exhausted retries
# to the DLQ with the attempt count.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name
                    wait_until emulator json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('token');

emulator(POST => '/reset');

my $t = GDrive::Test->new(workers => 4, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_retry attempts=3 base=20ms max=100ms;
    gdrive_token_skew 1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF

# the topic exists (4 partitions) before the members join
kafka_produce_lines($topic, ['w', '{"trigger_id":"warm","integration_id":"warm-int","action":"sync_changes"}']);
emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-warm', integration_id => 'warm-int' });
$t->run;

my $JSON = json();

sub results {
    my %r;
    for (kafka_consume("$topic.result")) {
        my $j = eval { $JSON->decode($_->{payload}) } or next;
        $r{$j->{trigger_id}} = $j;
    }
    return \%r;
}

sub dead {
    my %d;
    for (kafka_consume("$topic.dlq")) {
        my $j = eval { $JSON->decode($_->{payload}) } or next;
        $d{$j->{trigger_id}} = $_;
    }
    return \%d;
}

sub produce {
    my ($integration, @ids) = @_;
    kafka_produce_lines($topic, map { [$integration,
        qq({"trigger_id":"$_","integration_id":"$integration","action":"sync_changes"})] } @ids);
}

sub token_requests {
    my ($integration, $since) = @_;
    my $r = emulator(GET => "/requests?endpoint=token&integration=$integration"
                            . ($since ? "&since=$since" : ''));
    return @{ $r->{requests} // [] };
}

ok(wait_until('warm-up', 60, sub { results()->{warm} }), 'the workers are up');

# --- one refresh for 200 jobs on 4 workers ------------------------------------

emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-one', integration_id => 'int-one' });
emulator(DELETE => '/requests');

my @ids = map { "one-$_" } 1 .. 200;
produce('int-one', @ids);
ok(wait_until('200 results', 90, sub { my $r = results(); !grep { !$r->{$_} } @ids }),
   '200 jobs of one integration complete');
is(scalar(token_requests('int-one')), 1,
   'the token endpoint saw exactly one refresh for them');
my $cp = emulator(GET => '/requests?endpoint=cp.credentials&integration=int-one');
is($cp->{counts}{'cp.credentials'}, 1, 'and the control plane one credentials request');

# --- expiry ---------------------------------------------------------------------

emulator(POST => '/config', { token_ttl => 2 });
emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-exp', integration_id => 'int-exp' });
produce('int-exp', 'exp-1');
ok(wait_until('first', 30, sub { results()->{'exp-1'} }), 'a job gets a short-lived token');
sleep 2.5;
produce('int-exp', 'exp-2', 'exp-3');
ok(wait_until('after expiry', 30, sub { my $r = results(); $r->{'exp-2'} && $r->{'exp-3'} }),
   'jobs after its expiry complete');
is(scalar(token_requests('int-exp')), 2, 'the expired token was refreshed once');
emulator(POST => '/config', { token_ttl => 3599 });

# --- revoked ----------------------------------------------------------------------

emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-rev', integration_id => 'int-rev' });
emulator(POST => '/refresh_tokens/revoke', { refresh_token => '1//rt-rev' });
produce('int-rev', 'rev-1');
my $d = wait_until('revoked in DLQ', 30, sub { dead()->{'rev-1'} });
ok($d, 'a job with revoked credentials goes to the DLQ');
is($d->{headers}{'gdrive.error.code'}, 'auth_revoked', 'as auth_revoked');
is($d->{headers}{'gdrive.error.attempts'}, '1', 'at once, without retries');
my $re = emulator(GET => '/requests?endpoint=cp.reauthorize&integration=int-rev');
is($re->{counts}{'cp.reauthorize'}, 1, 'and the control plane was asked to reauthorize');

# --- transient failures -----------------------------------------------------------

emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-tr', integration_id => 'int-tr' });
emulator(POST => '/faults', { endpoint => 'token', integration => 'int-tr', status => 503, times => 2 });
produce('int-tr', 'tr-1');
my $r = wait_until('transient', 30, sub { results()->{'tr-1'} });
ok($r, 'a job whose token endpoint fails twice succeeds on a retry');
is($r->{attempts}, 3, 'at the third attempt');

emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-ex', integration_id => 'int-ex' });
emulator(POST => '/faults', { endpoint => 'token', integration => 'int-ex', status => 500, times => -1 });
produce('int-ex', 'ex-1');
$d = wait_until('exhausted', 30, sub { dead()->{'ex-1'} });
ok($d, 'a job whose retries are exhausted goes to the DLQ');
is($d->{headers}{'gdrive.error.code'}, 'upstream_error', 'as upstream_error');
is($d->{headers}{'gdrive.error.attempts'}, '3', 'after gdrive_retry attempts=3');
emulator(DELETE => '/faults');

# --- Retry-After --------------------------------------------------------------------

emulator(POST => '/refresh_tokens', { refresh_token => '1//rt-ra', integration_id => 'int-ra' });
emulator(POST => '/faults', { endpoint => 'token', integration => 'int-ra', status => 429,
                              retry_after => 2, times => 1 });
produce('int-ra', 'ra-1');
ok(wait_until('after Retry-After', 30, sub { results()->{'ra-1'} }),
   'a job told to come back later succeeds');
my @tr = sort { $a->{time_ms} <=> $b->{time_ms} } token_requests('int-ra');
is(scalar @tr, 2, 'with one more token request');
cmp_ok(($tr[1]{time_ms} // 0) - ($tr[0]{time_ms} // 0), '>=', 1950,
       'no sooner than Retry-After: 2 said');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts');
unlike($t->error_log, qr/rt-one|rt-ex|emulator-client-secret/,
       'no refresh token or client secret in the error log');

done_testing;
