#!/usr/bin/perl

# Waiting messages are inside the memory bound: the worker takes messages
# while their bytes are below gdrive_max_queued_bytes, then pauses its
# partitions, whatever gdrive_kafka_max_poll_records allows by count.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator consumer_conf
                    wait_until);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('bytes');
my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 1;
    gdrive_kafka_max_poll_records 500;
    gdrive_max_queued_bytes 256k;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF
$t->run;

my $int = unique_name('int');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

# the first job holds the only slot for a while
emulator(POST => '/faults', { endpoint => 'changes.startPageToken', integration => $int,
                              delay_ms => 4000, times => 1 });
my $pad = 'p' x 60_000;
kafka_produce_lines($topic, [$int, qq({"trigger_id":"slow-$int","integration_id":"$int","action":"sync_changes"})],
    map { [$int, qq({"trigger_id":"big-$_-$int","integration_id":"$int","action":"sync_changes","pad":"$pad"})] } 1 .. 40);

my ($max_bytes, $max_queued, $paused) = (0, 0, 0);
for (1 .. 30) {
    my ($b, $q, $p) = map { $t->metric_sum($_) }
        qw(gdrive_jobs_taken_bytes gdrive_jobs_queued gdrive_consumer_paused);
    $max_bytes = $b if $b > $max_bytes;
    $max_queued = $q if $q > $max_queued;
    $paused ||= $p;
    sleep 0.1;
}
ok($paused, 'the consumer paused on bytes');
cmp_ok($max_bytes, '<=', 256 * 1024 + 61_000, "at most one message over 256k was taken ($max_bytes bytes)");
cmp_ok($max_queued, '<=', 5, "so a handful wait, not 40 ($max_queued)");
cmp_ok($max_queued, '>=', 2, 'but some do');

my $last = job_outcome($topic, "big-40-$int", 120);
is($last->{result}{status}, 'changes_listed', 'every message is processed in the end');
ok(wait_until('bytes back to zero', 10, sub { $t->metric_sum('gdrive_jobs_taken_bytes') == 0 }),
   'and the count of bytes goes back to zero');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
