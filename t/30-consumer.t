#!/usr/bin/perl

# The background consumer against the real broker: every message ends as
# a result or a DLQ record, offsets are committed only past terminal
# messages, poison messages go to the DLQ at once with their bytes and
# Connect-style headers, and reloads and killed workers lose nothing.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use GDrive::Test qw(kafka_produce kafka_produce_lines kafka_consume
                    kafka_committed unique_name wait_until emulator json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('consume');
my $group = "group-$topic";

# the default refresh token for every integration (no control plane)
my $t = GDrive::Test->new(workers => 2, env => { CONTROL_PLANE_URL => undef },
                          http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_max_inflight 4;
    gdrive_kafka_max_poll_records 4;
    gdrive_kafka_topic $topic;
    gdrive_kafka_result_topic $topic.result;
    gdrive_kafka_dlq_topic $topic.dlq;
    gdrive_kafka_group $group;
    gdrive_kafka_commit_interval 500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { gdrive_health; }
        location = /status { gdrive_status; }
    }
EOF

# the topics exist with 4 partitions before the members join
kafka_produce_lines($topic, ['warm', '{"trigger_id":"warm-up","integration_id":"w","action":"sync_changes"}']);
$t->run;

my $JSON = json();

sub result_ids {
    my %ids;
    for (kafka_consume("$topic.result")) {
        my $r = eval { $JSON->decode($_->{payload}) } or next;
        $ids{$r->{trigger_id}}++;
    }
    return \%ids;
}

sub all_results {
    my ($ids, $timeout) = @_;
    return wait_until('results', $timeout // 60, sub {
        my $got = result_ids();
        !grep { !$got->{$_} } @$ids;
    });
}

# --- a poison message, between good ones -------------------------------------

my $poison = "\x00\xffnot json {\x01";
kafka_produce($topic, ['int-p', '{"trigger_id":"good-1","integration_id":"int-p","action":"sync_changes"}'],
                      ['int-p', $poison, { 'origin' => 'test-suite' }],
                      ['int-p', '{"integration_id":"int-p","action":"sync_changes"}'],
                      ['int-p', '{"trigger_id":"good-2","integration_id":"int-p","action":"sync_changes","drive_id":"0Ad1"}']);

ok(all_results(['warm-up', 'good-1', 'good-2']),
   'valid triggers around poison messages complete');

my @dlq;
wait_until('DLQ records', 30, sub { (@dlq = kafka_consume("$topic.dlq")) >= 2 });
is(scalar @dlq, 2, 'the two bad messages are in the DLQ, once each');

my ($bin) = grep { $_->{payload} eq $poison } @dlq;
ok($bin, 'the poison message is in the DLQ byte for byte');
is($bin->{key}, 'int-p', 'with its original key');
is($bin->{headers}{origin}, 'test-suite', 'and its original headers');
is($bin->{headers}{'gdrive.error.code'}, 'invalid_message', 'error code header');
is($bin->{headers}{'__connect.errors.topic'}, $topic, 'Connect topic header');
like($bin->{headers}{'__connect.errors.partition'}, qr/^\d+$/,
     'Connect partition header');
like($bin->{headers}{'__connect.errors.offset'}, qr/^\d+$/,
     'Connect offset header');
is($bin->{headers}{'__connect.errors.exception.class.name'}, 'invalid_message',
   'Connect exception class header carries the code');
like($bin->{headers}{'gdrive.error.message'} // '', qr/not valid JSON/,
     'the message says what is wrong');
is($bin->{headers}{'gdrive.error.attempts'}, '1', 'at the first attempt');
ok(length($bin->{headers}{'gdrive.error.time'} // ''), 'with a time');
like($bin->{headers}{'gdrive.error.worker'} // '', qr{/\d+$}, 'and a worker');

my ($noid) = grep { $_->{payload} =~ /int-p/ } @dlq;
is($noid->{headers}{'gdrive.error.code'}, 'missing_field',
   'a message without trigger_id is missing_field');

my $committed = wait_until('offsets committed', 30, sub {
    my $o = kafka_committed($group, $topic);
    my @p = values %$o;
    (@p && !grep { $_->{end} > 0 && ($_->{committed} // '-') ne $_->{end} } @p) ? $o : undef;
});
ok($committed, 'every partition is committed to its end, DLQ records included');

# --- backpressure ---------------------------------------------------------------

my @bp = map { "bp-$_" } 1 .. 200;
kafka_produce_lines($topic, map { ["int-" . ($_ % 11),
    qq({"trigger_id":"$bp[$_]","integration_id":"int-) . ($_ % 11)
    . qq(","action":"sync_changes"})] } 0 .. $#bp);

ok(all_results(\@bp, 120), 'a backlog of 200 completes');

my $st = $t->http_json(GET => '/status');
is($st->{status}, 200, 'the status location answers');
my @w = @{ $st->{json}{workers} // [] };
is(scalar @w, 2, 'it shows both workers');
ok(!grep({ $_->{inflight_peak} > 4 } @w),
   'no worker ever had more than gdrive_max_inflight (4) jobs in flight: '
   . join(',', map { $_->{inflight_peak} } @w));
ok(!grep({ $_->{inflight_peak} < 1 } @w), 'and both did work');
my @parts = sort map { map { $_->{partition} } @{ $_->{partitions} } } @w;
is("@parts", '0 1 2 3', 'the four partitions are owned, each by one worker');

my $lagged = wait_until('lag known', 10, sub {
    my @p = map { @{ $_->{partitions} } }
            @{ $t->http_json(GET => '/status')->{json}{workers} // [] };
    (@p == 4 && !grep { $_->{lag} != 0 || $_->{high_watermark} < 0 } @p)
        ? \@p : undef;
});
ok($lagged, 'the status page knows every partition\'s watermark and a lag of 0');

# --- a backlog, with reloads -----------------------------------------------------

my @ids = map { "bl-$_" } 1 .. 300;
kafka_produce_lines($topic, map { ["int-" . ($_ % 17),
    qq({"trigger_id":"$ids[$_]","integration_id":"int-) . ($_ % 17)
    . qq(","action":"sync_changes"})] } 0 .. $#ids);

for (1 .. 3) {
    sleep 0.7;
    $t->reload;
}

ok(all_results(\@ids, 120), 'a backlog of 300 completes across three reloads');

# --- a worker killed in the middle of jobs ------------------------------------
#
# Every job's token refresh takes 300 ms here (one integration per message,
# so none is cached): jobs are in flight when the worker dies.

emulator(POST => '/faults', { endpoint => 'token', delay_ms => 300, times => -1 });

my @ids2 = map { "kill-$_" } 1 .. 200;
kafka_produce_lines($topic, map { ["kill-int-$_",
    qq({"trigger_id":"$ids2[$_]","integration_id":"kill-int-$_","action":"sync_changes"})] }
    0 .. $#ids2);

my $busy = wait_until('a worker with jobs in flight', 30, sub {
    my ($w) = grep { $_->{inflight} > 0 }
              @{ $t->http_json(GET => '/status')->{json}{workers} // [] };
    $w;
});
ok($busy, "a worker has $busy->{inflight} jobs in flight");
ok($busy && kill('KILL', $busy->{pid}), 'it is killed with SIGKILL');

ok(all_results(\@ids2, 180),
   'every message still reaches a terminal outcome');
emulator(DELETE => '/faults');

# --- idle --------------------------------------------------------------------

sleep 2;
my @workers = $t->worker_pids;
my $cpu = sub {
    my $sum = 0;
    for my $pid (@workers) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my @f = split ' ', <$fh>;
        $sum += $f[13] + $f[14];
    }
    return $sum;
};
my $before = $cpu->();
sleep 3;
my $used = ($cpu->() - $before) / 100;
cmp_ok($used, '<', 0.3, "idle workers use no CPU to speak of ($used s in 3 s)");

$t->stop;
my @alerts = grep { !/exited on signal 9/ } $t->alerts;
is_deeply(\@alerts, [], 'no alerts but the killed worker');

done_testing;
