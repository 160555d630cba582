#!/usr/bin/perl

# A revoke's drain has a deadline: jobs of the revoked partitions that
# are still running at min(gdrive_shutdown_timeout, half of
# gdrive_kafka_max_poll_interval) are cancelled, the partitions are let
# go, and the next owner does those jobs. Here every token refresh takes
# 4 s and gdrive_shutdown_timeout is 1 s: when a second instance joins
# (the eager protocol revokes every partition), the first cuts its jobs
# at the deadline, and every message still ends with a result.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name wait_until
                    emulator json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('drain');

kafka_produce_lines($topic, ['w', '{"trigger_id":"warm","integration_id":"w","action":"sync_changes"}']);

my $conf = <<"EOF";
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_max_inflight 8;
    gdrive_shutdown_timeout 1s;
    gdrive_kafka_topic $topic;
    gdrive_kafka_result_topic $topic.result;
    gdrive_kafka_dlq_topic $topic.dlq;
    gdrive_kafka_group group-$topic;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF

my %env = (CONTROL_PLANE_URL => undef);
my $a = GDrive::Test->new(workers => 1, env => \%env, http => $conf)->run;

ok(wait_until('first member owns all', 60, sub {
    my ($w) = @{ $a->http_json(GET => '/status')->{json}{workers} // [] };
    $w && @{ $w->{partitions} } == 4;
}), 'the first instance owns the four partitions');

# slow jobs: a 4 s token refresh each (one integration per message)
emulator(POST => '/faults', { endpoint => 'token', delay_ms => 4000, times => -1 });

my @ids = map { "d-$_" } 1 .. 8;
kafka_produce_lines($topic, map { ["di-$_",
    qq({"trigger_id":"$ids[$_]","integration_id":"di-$_","action":"sync_changes"})] }
    0 .. $#ids);

ok(wait_until('jobs running', 30, sub {
    my ($w) = @{ $a->http_json(GET => '/status')->{json}{workers} // [] };
    $w && $w->{inflight};
}), 'the first instance runs the jobs');

my $b = GDrive::Test->new(workers => 1, env => \%env, http => $conf)->run;

ok(wait_until('shared', 60, sub {
    my ($wa) = @{ $a->http_json(GET => '/status')->{json}{workers} // [] };
    my ($wb) = @{ $b->http_json(GET => '/status')->{json}{workers} // [] };
    $wa && $wb && @{ $wa->{partitions} } == 2 && @{ $wb->{partitions} } == 2;
}), 'after the rebalance each instance owns two partitions');

my $done = wait_until('all results', 120, sub {
    my %n;
    for (kafka_consume("$topic.result")) {
        my $r = eval { json()->decode($_->{payload}) } or next;
        $n{$r->{trigger_id}}++;
    }
    (!grep { !$n{$_} } @ids) ? \%n : undef;
});
ok($done, 'every message ends with a result');
emulator(DELETE => '/faults');

like($a->error_log, qr/kafka revoke of 4 partitions waits for \d+ jobs, at most 1000 ms/,
     'the revoke waited for the running jobs, at most the deadline');
like($a->error_log, qr/drain deadline of 1000 ms passed, the jobs left are cancelled/,
     'the jobs still running at the deadline were cancelled');
like($a->error_log, qr/job cancelled: partition revoked/, 'and say so');

$_->stop for $a, $b;
is_deeply([map { $_->alerts } $a, $b], [], 'no alerts');

done_testing;
