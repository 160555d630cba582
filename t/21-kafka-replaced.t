#!/usr/bin/perl

# A worker whose Kafka cluster was replaced behind the same address (fresh
# data, a new cluster id: a rebuilt or restored cluster) goes on consuming
# from the new one, and still exits when told to.  librdkafka 2.0 keeps a
# broker thread of such a consumer for good and its destroy() waits for it
# forever; the worker waits for it a bounded time.  Renews the stack's
# Kafka (t/stack/stack.sh renew kafka).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator
                    drive_file consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('renew');
my $int = unique_name('int-renew');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $t = GDrive::Test->new(workers => 1, http => <<"EOF2");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF2
$t->run;

my $n = 0;
sub one {
    my $f = drive_file(name => "renew $n.bin", size => 2000);
    my $id = 'renew-' . ++$n . "-$int";
    kafka_produce_lines($topic, [$int, sprintf '{"trigger_id":"%s","integration_id":"%s","action":"sync_file","file_id":"%s"}',
                                       $id, $int, $f->{id}]);
    return job_outcome($topic, $id, 120);
}

my $o = one();
is($o->{result}{status} // '', 'uploaded', 'a file is synced') or diag explain $o;

system('bash', repo_root() . '/t/stack/stack.sh', 'renew', 'kafka') == 0
    or BAIL_OUT('cannot renew the stack\'s Kafka');

$o = one();
is($o->{result}{status} // '', 'uploaded', 'after the cluster was replaced, the worker consumes from the new one')
    or diag explain $o;

my $master = $t->master_pid;
my $start = time;
kill 'QUIT', $master;
sleep 0.2 while kill(0, $master) && time - $start < 60;
my $took = time - $start;
ok(!kill(0, $master), sprintf 'nginx exits when told to (in %.1f s)', $took);
cmp_ok($took, '<', 30, 'within the bounded wait for librdkafka and the close');
my $log = $t->error_log;
diag('librdkafka kept the consumer: the worker went without it') if $log =~ /not destroyed within/;
unlike($log, qr/\[alert\]|\[emerg\]|exited on signal/, 'nginx logs no alert and no crash');
$t->stop;

done_testing;
