#!/usr/bin/perl

# gdrive_max_connections' per_host is kept by the worker itself (curl is
# told no limit per host): past it an outbound request waits in the
# worker, behind the earlier ones of its host, until one of them ends.
# More jobs than per_host all end; the emulator never answers more of
# the integration's requests at once than per_host; the worker counts
# the requests that waited (metrics and status page), and none waits
# once the jobs are done. Jobs cancelled while their requests wait
# (nginx stopping at gdrive_shutdown_timeout) leave no alert behind.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator
                    drive_file consumer_conf wait_until);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $FILES = 12;
my $topic = unique_name('conns');
my $int = unique_name('int-conns');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 8;
    gdrive_max_connections 16 per_host=2;
    gdrive_rate_limit 1000r/s burst=100;
    gdrive_global_rate_limit 1000r/s burst=100;
    gdrive_shutdown_timeout 1s;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
        location = /status { gdrive_status; }
    }
EOF
$t->run;

sub trigger {
    my ($prefix, @files) = @_;
    my $n = 0;
    kafka_produce_lines($topic, map {
        [$int, sprintf '{"trigger_id":"%s-%d-%s","integration_id":"%s","action":"sync_file","file_id":"%s"}',
                       $prefix, ++$n, $int, $int, $_->{id}]
    } @files);
}

# every download takes a while, so that the jobs' requests pile up
my @files = map { drive_file(name => "conn $_.bin", size => 3000 + $_) } 1 .. $FILES;
emulator(POST => '/faults', { endpoint => 'files.media', integration => $int,
                              delay_ms => 400, times => $FILES });
trigger('a', @files);

my %status;
for my $i (1 .. $FILES) {
    my $o = job_outcome($topic, "a-$i-$int", 120);
    $status{ $o->{result} ? $o->{result}{status} : 'dlq' }++;
}
is_deeply(\%status, { uploaded => $FILES }, "all $FILES files are uploaded");

my $c = emulator(GET => "/concurrency?integration=$int");
cmp_ok($c->{max_open}, '<=', 2, "Google never answered more than per_host=2 requests at once ($c->{max_open})");
is($c->{max_open}, 2, 'and the two connections were both used');

cmp_ok($t->metric_sum('gdrive_http_requests_waited_total'), '>=', $FILES / 2,
       'requests waited for a connection in the worker');
ok(wait_until('no request waits', 10, sub { $t->metric_sum('gdrive_http_requests_waiting') == 0 }),
   'none waits once the jobs are done');
my ($w) = @{ $t->http_json(GET => '/status?format=json')->{json}{workers} // [] };
is($w->{http_waiting}, 0, 'the status page shows none waiting');
is($w->{http_waited}, $t->metric_sum('gdrive_http_requests_waited_total'),
   'and as many that waited as the metric');

# requests still waiting when nginx stops: their jobs are cancelled
my @slow = map { drive_file(name => "slow $_.bin", size => 2000 + $_) } 1 .. 6;
emulator(POST => '/faults', { endpoint => 'files.media', integration => $int,
                              delay_ms => 20_000, times => 6 });
trigger('b', @slow);
ok(wait_until('requests wait', 30, sub { $t->metric_sum('gdrive_http_requests_waiting') > 0 }),
   'with the downloads held, requests wait for a connection');
my $pid = $t->master_pid;
$t->signal('QUIT');
ok(wait_until('nginx exits', 20, sub { !kill 0, $pid }),
   'nginx stops at gdrive_shutdown_timeout, its jobs cancelled');
is_deeply([$t->alerts], [], 'nginx logs no alert');
emulator(DELETE => '/faults');

done_testing;
