#!/usr/bin/perl

# The Drive rate limit is shared by all workers through the zone: with
# gdrive_rate_limit 5r/s and 4 workers taking one integration's jobs from
# every partition, the emulator never sees more than 5 requests a second
# (plus the burst) for it, while another integration goes through
# unhindered.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use GDrive::Test qw(kafka_produce_lines kafka_json_by_id unique_name
                    wait_until emulator consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('rate');
my $run = unique_name('r');
my ($slow, $fast) = ("slow-$run", "fast-$run");

my $t = GDrive::Test->new(workers => 4, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_rate_limit 5r/s burst=5;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF

for my $i ($slow, $fast, "warm-$run") {
    emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i", integration_id => $i });
}

# warm-up triggers on every partition, so that all four members are busy
kafka_produce_lines($topic, map { ["k$_", qq({"trigger_id":"warm-$run-$_","integration_id":"warm-$run","action":"sync_changes"})] } 1 .. 8);
$t->run;
ok(wait_until('warm-up', 90, sub {
    my $r = kafka_json_by_id("$topic.result");
    !grep { !$r->{"warm-$run-$_"} } 1 .. 8;
}), 'the workers are up');
ok(wait_until('the group settles', 60, sub {
    my $w = $t->http_json(GET => '/status?format=json')->{json}{workers} // [];
    @$w == 4 && !grep { @{ $_->{partitions} // [] } != 1 } @$w;
}), 'each of the four workers has one partition');

# 100 jobs of one integration, spread over every partition (the key is
# not the integration here) so that all workers ask at once
my $start = int(time * 1000);
kafka_produce_lines($topic, map { ["key-$_", qq({"trigger_id":"$slow-$_","integration_id":"$slow","action":"sync_changes"})] } 1 .. 100);
sleep 2;
my $fast_sent = time;
kafka_produce_lines($topic, map { ["key-$_", qq({"trigger_id":"$fast-$_","integration_id":"$fast","action":"sync_changes"})] } 1 .. 5);

ok(wait_until('the other integration', 60, sub {
    my $r = kafka_json_by_id("$topic.result");
    !grep { !$r->{"$fast-$_"} } 1 .. 5;
}), 'the other integration completes');
ok(wait_until('the throttled integration', 120, sub {
    my $r = kafka_json_by_id("$topic.result");
    !grep { !$r->{"$slow-$_"} } 1 .. 100;
}), 'the throttled integration completes too');

# when each result was written (reading a topic while it is written
# waits for it to go quiet, so the times come from the records)
my $results = kafka_json_by_id("$topic.result");
my ($fast_end) = sort { $b <=> $a } map { $results->{"$fast-$_"}{_record}{timestamp} } 1 .. 5;
my ($slow_end) = sort { $b <=> $a } map { $results->{"$slow-$_"}{_record}{timestamp} } 1 .. 100;
cmp_ok($fast_end - $fast_sent * 1000, '<', 5000, 'the other integration did not wait for the throttled one');
cmp_ok($slow_end - $fast_end, '>', 5000, 'which went on for a while after');

my $log = emulator(GET => "/requests?integration=$slow&since=$start");
my @times = sort { $a <=> $b } map { $_->{time_ms} }
            grep { $_->{endpoint} =~ /^(files|changes)\./ } @{ $log->{requests} };
cmp_ok(scalar @times, '>=', 100, 'the emulator saw a Drive request for every job')
    or diag explain [map { "$_->{endpoint} $_->{status}" } @{ $log->{requests} }];

# the most requests in any 10-second window: 5/s and the burst (5 + 1)
my $max = 0;
for my $i (0 .. $#times) {
    my $n = grep { $_ >= $times[$i] && $_ < $times[$i] + 10_000 } @times[$i .. $#times];
    $max = $n if $n > $max;
}
# the limiter releases requests on time; their arrival at the emulator
# jitters by some milliseconds on a loaded machine: a few requests of slack
cmp_ok($max, '<=', 5 * 10 + 6 + 4, 'no 10-second window saw more than 5 r/s plus the burst')
    or diag "max in 10 s: $max";

# over the whole run: after the burst, no more than 5 a second
my $span = ($times[-1] - $times[0]) / 1000;
cmp_ok((@times - 6) / $span, '<=', 5.1, 'the average rate after the burst is at most 5 r/s')
    or diag sprintf '%d requests in %.2f s', scalar @times, $span;
cmp_ok($max, '>=', 40, 'and the limit was used, not undershot');

my $status = $t->http_json(GET => '/status?format=json')->{json};
ok($status, 'the status page answers');

is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
