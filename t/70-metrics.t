#!/usr/bin/perl

# gdrive_metrics against the real broker: the exposition passes promtool,
# and its counters move exactly as triggers are answered and messages end.
# Needs: the local stack (make stack), promtool (Debian package
# prometheus).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempfile);
use GDrive::Test qw(kafka_produce kafka_produce_lines kafka_consume
                    unique_name wait_until json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};
plan skip_all => 'promtool is not installed (Debian package prometheus)'
    unless grep { -x "$_/promtool" } split /:/, $ENV{PATH};

my $topic = unique_name('metrics');
my $group = "group-$topic";

my $t = GDrive::Test->new(workers => 2, env => { CONTROL_PLANE_URL => undef },
                          http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_kafka_topic $topic;
    gdrive_kafka_result_topic $topic.result;
    gdrive_kafka_dlq_topic $topic.dlq;
    gdrive_kafka_group $group;
    gdrive_kafka_commit_interval 500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
        location = /status { gdrive_status; }
        location = /triggers { gdrive_trigger; }
    }
EOF

# the topics exist before the members join
kafka_produce_lines($topic, ['warm', '{"trigger_id":"warm-up","integration_id":"w","action":"sync_changes"}']);
$t->run;

my $JSON = json();

sub scrape { $t->http(GET => '/metrics') }

# { 'name{labels}' => value }
sub parse {
    my ($text) = @_;
    my %m;
    for (split /\n/, $text) {
        next if /^#/ || !/\S/;
        my ($k, $v) = /^(\S+)\s+(\S+)$/ or next;
        $m{$k} = $v;
    }
    return \%m;
}

sub promtool_ok {
    my ($text) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < $file 2>&1`;
    return ($? == 0, $out);
}

sub result_ids {
    my %ids;
    for (kafka_consume("$topic.result")) {
        my $r = eval { $JSON->decode($_->{payload}) } or next;
        $ids{$r->{trigger_id}}++;
    }
    return \%ids;
}

my $res = scrape();
is($res->{status}, 200, 'the metrics location answers');
like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'as Prometheus text exposition 0.0.4');
my ($ok, $out) = promtool_ok($res->{content});
ok($ok, 'promtool accepts the exposition before any work') or diag $out;

ok(wait_until('warm-up done', 60, sub { result_ids()->{'warm-up'} }),
   'the warm-up message is processed');

# --- work whose effect on every counter is known -----------------------------

my @ids = map { "m-$_-$$" } 1 .. 5;
my $batch = '[' . join(',', map {
    qq({"trigger_id":"$_","integration_id":"int-m","action":"sync_changes"})
} @ids) . ']';

$res = $t->http(POST => '/triggers', body => $batch,
                headers => { 'content-type' => 'application/json' });
is($res->{status}, 202, 'a batch of five triggers is accepted');

$res = $t->http(POST => '/triggers', body => '{"action":',
                headers => { 'content-type' => 'application/json' });
is($res->{status}, 400, 'a malformed trigger is refused');

$res = $t->http(POST => '/triggers', body => '{}',
                headers => { 'content-type' => 'text/plain' });
is($res->{status}, 415, 'a trigger of the wrong type is refused');

kafka_produce($topic, ['int-m', "\x00not json"],
                      ['int-m', '{"integration_id":"int-m","action":"sync_changes"}']);

ok(wait_until('results', 60, sub { my $r = result_ids(); !grep { !$r->{$_} } @ids }),
   'the five triggers have results');
ok(wait_until('DLQ', 60, sub { kafka_consume("$topic.dlq") >= 2 }),
   'the two bad messages are in the DLQ');

my $m;
ok(wait_until('counters settle', 10, sub {
       $m = parse(scrape()->{content});
       ($m->{gdrive_processing_duration_seconds_count} // 0) == 8 ? $m : undef;
   }), 'eight messages ended: warm-up, five triggers, two bad ones');

is($m->{'gdrive_triggers_received_total{status="202"}'}, 5,
   'each accepted trigger of the batch is counted under 202');
is($m->{'gdrive_triggers_received_total{status="400"}'}, 1,
   'the malformed request is counted once under 400');
is($m->{'gdrive_triggers_received_total{status="415"}'}, 1,
   'the request of the wrong type is counted once under 415');
is($m->{'gdrive_messages_processed_total{outcome="changes_listed",code="none"}'}, 6,
   'six messages ended with a result');
is($m->{'gdrive_messages_processed_total{outcome="dlq",code="invalid_message"}'}, 1,
   'the message that is not JSON is counted as invalid_message');
is($m->{'gdrive_messages_processed_total{outcome="dlq",code="missing_field"}'}, 1,
   'the message without a trigger id is counted as missing_field');
is($m->{gdrive_dlq_records_produced_total}, 2, 'two DLQ records produced');
is($m->{'gdrive_processing_duration_seconds_bucket{le="+Inf"}'}, 8,
   'the histogram\'s +Inf bucket holds every message');
like($m->{gdrive_processing_duration_seconds_sum}, qr/^\d+\.\d{3}$/,
     'the histogram\'s sum is in seconds');
is(($m->{'gdrive_cache_hits_total{cache="token"}'} // 0)
   + ($m->{'gdrive_cache_misses_total{cache="token"}'} // 0), 6,
   'every message with a result looked up its token once: a hit or a miss');
cmp_ok($m->{'gdrive_token_refreshes_total{result="ok"}'}, '>=', 1,
       'at least one token refresh succeeded');
is($m->{'gdrive_google_requests_total{endpoint="token",status="200"}'},
   $m->{'gdrive_token_refreshes_total{result="ok"}'},
   'each successful refresh is one token endpoint request answered 200');
is($m->{'gdrive_token_refreshes_total{result="ok"}'},
   $m->{'gdrive_cache_misses_total{cache="token"}'},
   'each cache miss made one refresh');
is(scalar(grep { /^gdrive_jobs_in_flight\{worker="\d+"\}$/ } keys %$m), 2,
   'in-flight jobs are shown for both workers');
is(scalar(grep { /^gdrive_worker_resident_memory_bytes\{worker="\d+"\}$/
                 && $m->{$_} > 0 } keys %$m), 2,
   'and the resident memory of both');
ok(!grep({ /m-\d-$$|warm-up/ } keys %$m), 'no label carries a trigger id');

# a message on every partition: a partition the consumer never fetched
# from has no known lag (no watermark yet), and is not exported
for my $p (0 .. 3) {
    open my $kc, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', $topic, '-p', $p
        or die "kcat: $!";
    print $kc qq({"trigger_id":"p$p-$$","integration_id":"w","action":"sync_changes"}\n);
    close $kc;
}
ok(wait_until('a result per partition', 60, sub { my $r = result_ids(); !grep { !$r->{"p$_-$$"} } 0 .. 3 }),
   'a message on each partition is processed');

my @lag;
ok(wait_until('lag known', 30, sub {
       my $m = parse(scrape()->{content});
       @lag = map { "$_ $m->{$_}" } grep { /^gdrive_consumer_lag\{/ } keys %$m;
       @lag == 4 && !grep { !/ 0$/ } @lag;
   }), 'the lag of each of the four partitions is 0') or diag "@lag";

$res = scrape();
($ok, $out) = promtool_ok($res->{content});
ok($ok, 'promtool accepts the exposition after the work') or diag $out;

my $st = $t->http_json(GET => '/status');
my ($err) = grep { $_->{code} eq 'missing_field' } @{ $st->{json}{errors} // [] };
ok($err, 'the status page lists the dead-lettered message among recent errors');

$res = $t->http(POST => '/metrics');
is($res->{status}, 405, 'POST to the metrics location is refused');

is(scalar($t->alerts), 0, 'no alerts in the error log');

done_testing;
