#!/usr/bin/perl

# A cooperative (incremental) rebalance in the middle of slow jobs: a
# second instance joins, the partitions it takes are revoked from the
# first, whose running jobs of those partitions end (and are committed)
# before it lets them go, and every message ends with one result: none
# is done again by the new owner.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name wait_until
                    emulator json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('coop');

kafka_produce_lines($topic, ['w', '{"trigger_id":"warm","integration_id":"w","action":"sync_changes"}']);

my $conf = <<"EOF";
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_max_inflight 8;
    gdrive_kafka_topic $topic;
    gdrive_kafka_result_topic $topic.result;
    gdrive_kafka_dlq_topic $topic.dlq;
    gdrive_kafka_group group-$topic;
    gdrive_kafka_option partition.assignment.strategy cooperative-sticky;

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

# slow jobs: a 150 ms token refresh each (one integration per message)
emulator(POST => '/faults', { endpoint => 'token', delay_ms => 150, times => -1 });

my @ids = map { "c-$_" } 1 .. 120;
kafka_produce_lines($topic, map { ["ci-$_",
    qq({"trigger_id":"$ids[$_]","integration_id":"ci-$_","action":"sync_changes"})] }
    0 .. $#ids);

sleep 1;
my $b = GDrive::Test->new(workers => 1, env => \%env, http => $conf)->run;

ok(wait_until('shared', 60, sub {
    my ($wa) = @{ $a->http_json(GET => '/status')->{json}{workers} // [] };
    my ($wb) = @{ $b->http_json(GET => '/status')->{json}{workers} // [] };
    $wa && $wb && @{ $wa->{partitions} } == 2 && @{ $wb->{partitions} } == 2;
}), 'after the incremental rebalance each instance owns two partitions');

my $done = wait_until('all results', 180, sub {
    my %n;
    for (kafka_consume("$topic.result")) {
        my $r = eval { json()->decode($_->{payload}) } or next;
        $n{$r->{trigger_id}}++;
    }
    (!grep { !$n{$_} } @ids) ? \%n : undef;
});
ok($done, 'every message ends with a result');
emulator(DELETE => '/faults');

like($a->error_log, qr/rebalance: revoked 2 partitions \(cooperative\)/,
     'the first instance gave up two partitions incrementally');
is_deeply([grep { $done->{$_} > 1 } sort keys %$done], [],
          'no message has two results: the revoke let its jobs end');
# when the revoke found jobs running, it waited for them, not the deadline
if ($a->error_log =~ /kafka revoke of 2 partitions waits for (\d+) jobs/) {
    diag "the revoke waited for $1 jobs";
    like($a->error_log, qr/the revoked partitions' jobs ended/,
         'they ended before the drain deadline');
}

$_->stop for $a, $b;
is_deeply([map { $_->alerts } $a, $b], [], 'no alerts');

done_testing;
