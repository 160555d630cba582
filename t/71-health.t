#!/usr/bin/perl

# gdrive_health: liveness always answers; readiness is 503 "unhealthy"
# while no Kafka broker is reachable and 200 when one is; a failed probe
# of Google or a figure over a checklist threshold is 200 "degraded".
# Needs: the local stack (make stack).
#
# The shared broker is never stopped: an nginx points at a closed port
# (503), then a proxy to the broker starts listening there (200).  The
# way back (proxy stopped, 503 again) cannot be shown so: the broker
# advertises 127.0.0.1:19092 in its metadata, so after bootstrapping
# through the proxy librdkafka talks to the broker directly, and the
# broker is in fact still reachable.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use GDrive::Test qw(kafka_produce kafka_produce_lines kafka_consume
                    unique_name wait_until free_port consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $closed = free_port();

# a TCP proxy in a child process: 127.0.0.1:$port -> $to (host:port)
sub start_proxy {
    my ($port, $to) = @_;
    ($to) = split /,/, $to;
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => $port, Listen => 16,
                                       ReuseAddr => 1)
        or die "proxy listen: $!";
    my $pid = fork // die "fork: $!";
    return $pid if $pid;

    $SIG{TERM} = sub { kill 'TERM', -$$; POSIX::_exit(0) };
    setpgrp(0, 0);
    $SIG{CHLD} = 'IGNORE';
    while (my $in = $listen->accept) {
        next if fork;
        my $out = IO::Socket::INET->new(PeerAddr => $to) or POSIX::_exit(1);
        my $sel = IO::Select->new($in, $out);
        LOOP: while (my @ready = $sel->can_read) {
            for my $s (@ready) {
                my $n = sysread($s, my $buf, 65536);
                last LOOP unless $n;
                syswrite($s == $in ? $out : $in, $buf) or last LOOP;
            }
        }
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}

# --- configuration ------------------------------------------------------------

my $bad = GDrive::Test->new(http => <<"EOF");
    gdrive_zone gdrive 1m;
    gdrive_health_max_memory 150%;
    server { listen 127.0.0.1:%%PORT%%; location = /health { gdrive_health; } }
EOF
my ($rc, $out) = $bad->test_conf;
isnt($rc, 0, 'a threshold above 100% is refused');
like($out, qr/gdrive_health_max_memory.*percentage/,
     'naming the directive and what is expected');

$bad = GDrive::Test->new(env => { GDRIVE_HEALTH_MAX_LAG => 'many' },
                         http => <<"EOF");
    gdrive_zone gdrive 1m;
    server { listen 127.0.0.1:%%PORT%%; location = /health { gdrive_health; } }
EOF
($rc, $out) = $bad->test_conf;
isnt($rc, 0, 'a bad threshold from the environment is refused');
like($out, qr/GDRIVE_HEALTH_MAX_LAG.*gdrive_health_max_lag/,
     'naming the variable and the directive');

# --- Kafka unreachable: unhealthy, but live -------------------------------------

my $down = GDrive::Test->new(http => <<"EOF");
    gdrive_zone gdrive 1m;
    gdrive_kafka_brokers 127.0.0.1:$closed;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { gdrive_health; }
    }
EOF
$down->run;

my $h = wait_until('unhealthy', 30, sub {
    my $r = $down->http_json(GET => '/health');
    $r->{status} == 503 ? $r : undef;
});
ok($h, 'readiness answers 503 while no broker is reachable');
is($h->{json}{status}, 'unhealthy', 'with the status "unhealthy"');
is($h->{json}{checks}{kafka}{ok}, JSON::PP::false(), 'the kafka check failed');
like($h->{json}{checks}{kafka}{detail} // '', qr/brokers are down/,
     'and says why');

my $live = $down->http_json(GET => '/health?live');
is($live->{status}, 200, 'liveness still answers 200');
is($live->{json}{status}, 'healthy', 'and says the worker loop runs');

$live = $down->http(POST => '/health');
is($live->{status}, 405, 'POST is refused');

# the closed port starts answering: a proxy to the broker opens on it;
# librdkafka bootstraps through it, and its statistics report the broker
# up within statistics.interval.ms

my $proxy = start_proxy($closed, $ENV{KAFKA_BOOTSTRAP_SERVERS});
$h = wait_until('healthy again', 60, sub {
    my $r = $down->http_json(GET => '/health');
    $r->{status} == 200 ? $r : undef;
});
ok($h, 'readiness turns 200 when a broker becomes reachable');
ok($h && $h->{json}{checks}{kafka}{ok}, 'the kafka check passes again');
cmp_ok($h ? $h->{json}{checks}{kafka}{brokers_up} : 0, '>=', 1,
       'with a broker up');
like($down->error_log, qr/brokers up again/, 'the error log says so');
kill 'TERM', $proxy;
waitpid $proxy, 0;
$down->stop;

# --- the real broker: healthy ----------------------------------------------------

my $topic = unique_name('health');
kafka_produce_lines($topic, ['warm', '{"trigger_id":"warm-up","integration_id":"w","action":"sync_changes"}']);

my $up = GDrive::Test->new(env => { CONTROL_PLANE_URL => undef }, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_health_interval 2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { gdrive_health; }
        location = /status { gdrive_status; }
    }
EOF
$up->run;

$h = wait_until('healthy', 30, sub {
    my $r = $up->http_json(GET => '/health');
    ($r->{json}{status} // '') eq 'healthy' ? $r : undef;
});
ok($h, 'readiness is "healthy" with the real broker');
is($h->{status}, 200, 'and answers 200');
my $c = $h ? $h->{json}{checks} : {};
ok($c->{kafka}{ok}, 'the kafka check passed');
ok($c->{google_api}{ok}, 'the token endpoint and the Drive API are reachable');
is($c->{google_api}{token_endpoint}{status}, 405,
   'the token endpoint was asked without credentials');
ok($c->{s3}{ok}, 'the S3 bucket is reachable');
for my $name (qw(memory consumer_lag rate_limit dlq error_rate p95_processing)) {
    ok(exists $c->{$name}{ok}, "the checklist's $name check is reported");
}
is($c->{consumer_lag}{threshold}, 1000, 'the lag threshold is the guide\'s 1000');
is($c->{dlq}{threshold}, 100, 'the DLQ threshold is the guide\'s 100');
cmp_ok($c->{memory}{rss_bytes}, '>', 0, 'the workers\' memory is measured');

my $page = $up->http(GET => '/status');
like($page->{content}, qr/Health probes.*reachable/s,
     'the status page shows the probes\' answers');
$up->stop;

# --- Drive unreachable and a DLQ over its threshold: degraded -------------------

my $t2 = unique_name('degraded');
kafka_produce_lines($t2, ['warm', '{"trigger_id":"warm-up","integration_id":"w","action":"sync_changes"}']);

my $deg = GDrive::Test->new(env => { CONTROL_PLANE_URL => undef,
                                     GOOGLE_API_URL => "http://127.0.0.1:$closed" },
                            http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_kafka_topic $t2;
    gdrive_kafka_result_topic $t2.result;
    gdrive_kafka_dlq_topic $t2.dlq;
    gdrive_kafka_group group-$t2;
    gdrive_health_interval 1s;
    gdrive_health_timeout 2s;
    gdrive_health_max_dlq 1;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { gdrive_health; }
    }
EOF
$deg->run;

kafka_produce($t2, ['w', 'not json']);
ok(wait_until('DLQ', 60, sub { kafka_consume("$t2.dlq") >= 1 }),
   'a poison message reaches the DLQ');

$h = wait_until('degraded', 30, sub {
    my $r = $deg->http_json(GET => '/health');
    ($r->{json}{checks}{dlq}{ok} // 1) ? undef : $r;
});
ok($h, 'the dlq check fails at gdrive_health_max_dlq');
is($h->{status}, 200, 'a degraded instance still answers 200');
is($h->{json}{status}, 'degraded', 'with the status "degraded"');
$c = $h ? $h->{json}{checks} : {};
ok($c->{kafka}{ok}, 'Kafka is fine');
ok(!$c->{google_api}{ok}, 'the Drive API probe failed');
ok(!$c->{google_api}{drive_api}{ok} && $c->{google_api}{drive_api}{status} == 0,
   'it was not reached at all');
ok($c->{google_api}{token_endpoint}{ok}, 'the token endpoint was reached');
is($c->{dlq}{value}, 1, 'one record in the DLQ');

is(scalar($deg->alerts), 0, 'no alerts in the error log');

done_testing;
