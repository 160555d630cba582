#!/usr/bin/perl

# A flood of new integration ids must not wipe out what the rate limiter
# learned: buckets holding a quota circuit (or a Retry-After) are never
# evicted for newcomers, which wait for room instead; live buckets that
# hold nothing may go, counted by cause.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator consumer_conf
                    wait_until);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('flood');
# the smallest zone: a quarter of it, 256 buckets, for the rate limiter
my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 256k;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 32;
    gdrive_quota_pause 15s;
    gdrive_global_rate_limit 2000r/s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF
$t->run;

my $run = unique_name('q');
my $q = "quota-$run";
for my $i ($q, map { "flood-$_-$run" } 1 .. 300) {
    emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i", integration_id => $i });
}

sub starts {
    my ($since) = @_;
    my $r = emulator(GET => "/requests?integration=$q&endpoint=changes.startPageToken&since=$since");
    return sort { $a->{time_ms} <=> $b->{time_ms} } @{ $r->{requests} // [] };
}

# the integration's quota circuit opens
my $since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'changes.startPageToken', integration => $q, status => 403,
                              reason => 'dailyLimitExceeded', times => 1 });
kafka_produce_lines($topic, [$q, qq({"trigger_id":"q1-$run","integration_id":"$q","action":"sync_changes"})]);
ok(wait_until('the circuit opens', 30, sub { my @s = starts($since); @s && ($s[0]{status} // 0) == 403 }),
   'the quota circuit of an integration is open');
my ($first) = starts($since);

# 300 integrations never seen before, more than the zone has buckets for
kafka_produce_lines($topic, map { ["flood-$_-$run", qq({"trigger_id":"f$_-$run","integration_id":"flood-$_-$run","action":"sync_changes"})] } 1 .. 300);
is(job_outcome($topic, "f300-$run", 60)->{result}{status}, 'changes_listed', 'the flood of 300 new ids is served');

# another job of the integration meets the circuit still open
kafka_produce_lines($topic, [$q, qq({"trigger_id":"q2-$run","integration_id":"$q","action":"sync_changes"})]);
is(job_outcome($topic, "q2-$run", 60)->{result}{status}, 'changes_listed', 'another job of it ends well');
my @s = starts($since);
ok(@s >= 2 && $s[1]{time_ms} - $first->{time_ms} >= 14_500,
   'but only once the circuit closed: the flood did not evict it')
    or diag explain [map { "$_->{status} $_->{time_ms}" } @s];
is(job_outcome($topic, "q1-$run", 60)->{result}{status}, 'changes_listed', 'the first job too');

my $m = $t->http(GET => '/metrics')->{content} // '';
my ($lru) = $m =~ /^gdrive_ratelimit_evictions_total\{cause="lru"\} (\d+)$/m;
cmp_ok($lru // 0, '>', 0, 'live buckets that held nothing were evicted, and counted');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
