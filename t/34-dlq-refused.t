#!/usr/bin/perl

# A dead letter that the dead-letter topic refuses for good must not stall
# its partition: a record too large for the DLQ topic (a 1.04 MB trigger
# that the trigger topic took) goes cut, with gdrive.error.truncated; one
# that the topic refuses even cut to 1 KiB is dropped with an alert and a
# metric, and the partition goes on.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(job_outcome kafka_consume kafka_committed unique_name wait_until
                    emulator json consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $tool = repo_root() . '/t/stack/kafka-tool.sh';

sub create_topic {
    my ($name, $max) = @_;
    my $out = `$tool topics --bootstrap-server $ENV{KAFKA_BOOTSTRAP_SERVERS} --create --topic $name --partitions 1 --replication-factor 1 --config max.message.bytes=$max 2>&1`;
    is($?, 0, "topic $name with max.message.bytes=$max") or diag $out;
}

# one record with kcat, allowed as large as the trigger topic takes
sub produce_big {
    my ($topic, $key, $value) = @_;
    open my $fh, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', $topic, '-k', $key,
        '-X', 'message.max.bytes=4000000', '-X', 'acks=all' or die "kcat: $!";
    binmode $fh;
    print $fh $value;
    close $fh or die "kcat failed: $?";
}

sub nginx_for {
    my ($topic) = @_;
    return GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF
}

my $run = unique_name('big');
my $int = "int-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

# --- a DLQ topic that takes 100 000 bytes per record ----------------------------

my $topic = unique_name('bigdlq');
create_topic($topic, 2_097_152);
create_topic("$topic.dlq", 100_000);
my $t = nginx_for($topic);
$t->run;

my $big = '{"trigger_id":"huge-' . $run . '","integration_id":"' . $int
          . '","action":"sync_changes","pad":"' . ('x' x 1_040_000) . '"}';
produce_big($topic, $int, $big);
produce_big($topic, $int, qq({"trigger_id":"after-$run","integration_id":"$int","action":"sync_changes"}));

my $after = job_outcome($topic, "after-$run", 90);
is($after->{result}{status}, 'changes_listed', 'the trigger after the huge one is processed');

my $dead = wait_until('the dead letter', 60, sub {
    (grep { ($_->{headers}{'gdrive.error.code'} // '') eq 'invalid_message' } kafka_consume("$topic.dlq"))[0] });
ok($dead, 'the huge trigger is in the DLQ') or BAIL_OUT('no dead letter');
is($dead->{headers}{'gdrive.error.truncated'}, length $big, 'with gdrive.error.truncated: its original size');
cmp_ok(length $dead->{payload}, '<', 100_000, 'its value cut to what the topic takes');
is($dead->{payload}, substr($big, 0, length $dead->{payload}), 'the first bytes of the original');
is($dead->{key}, $int, 'under its key');
ok(wait_until('committed past both', 30, sub {
    (kafka_committed("group-$topic", $topic)->{0} // 0) >= 2 }), 'the partition\'s offset moved past both');
like($t->error_log, qr/dead-letter topic refused the record .* cut to/, 'the cut is logged');
is_deeply([$t->alerts], [], 'no alert: the dead letter was taken');
$t->stop;

# --- a DLQ topic that refuses everything ---------------------------------------

$topic = unique_name('nodlq');
create_topic($topic, 1_048_576);
create_topic("$topic.dlq", 600);
$t = nginx_for($topic);
$t->run;

produce_big($topic, $int, 'not JSON ' . ('y' x 5000));
produce_big($topic, $int, qq({"trigger_id":"next-$run","integration_id":"$int","action":"sync_changes"}));
my $next = job_outcome($topic, "next-$run", 90);
is($next->{result}{status}, 'changes_listed', 'a refused dead letter does not stall the partition');
ok(wait_until('committed past both', 30, sub {
    (kafka_committed("group-$topic", $topic)->{0} // 0) >= 2 }), 'its offset is stored');
my @alerts = $t->alerts;
is(scalar(grep { /refuses the record of 1024 bytes.*dropped/ } @alerts), 1,
   'one alert says the message was dropped and why') or diag explain \@alerts;
my $metrics = $t->http(GET => '/metrics')->{content} // '';
like($metrics, qr/^gdrive_dlq_records_dropped_total 1$/m, 'and a metric counts it');

done_testing;
