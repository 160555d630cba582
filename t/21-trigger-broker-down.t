#!/usr/bin/perl

# gdrive_trigger while the broker is away: 503 with Retry-After and a JSON
# body once the delivery timeout passes, other requests still served, and
# ingestion resumes by itself when the broker is back.  Stops and restarts
# the stack's Kafka (its data is kept).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GDrive::Test qw(kafka_consume unique_name wait_until repo_root json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $stack = repo_root() . '/t/stack/stack.sh';
my $topic = unique_name('down');

my $t = GDrive::Test->new(http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_topic $topic;
    gdrive_kafka_delivery_timeout 3s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
        location = /health { gdrive_health; }
    }
EOF
$t->run;

my %ct = ('content-type' => 'application/json');
sub post {
    my ($id) = @_;
    return $t->http_json(POST => '/triggers', headers => \%ct, timeout => 30,
        body => qq({"trigger_id":"$id","integration_id":"i","action":"sync_changes"}));
}

is(post('before')->{status}, 202, 'a trigger is accepted while Kafka is up');

system('bash', $stack, 'stop', 'kafka') == 0
    or BAIL_OUT('cannot stop the stack\'s Kafka');

# one POST waits for its delivery report while others are served
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $r = post('while-down');
    open my $fh, '>', $t->dir . '/down.json' or die;
    print $fh json()->encode({ status => $r->{status},
        retry_after => $r->{headers}{'retry-after'}, body => $r->{json} });
    close $fh;
    exit 0;
}

sleep 0.5;
my $h = $t->http_json(GET => '/health?live', timeout => 5);
is($h->{status}, 200, 'the worker serves other requests meanwhile');

waitpid $pid, 0;
my $down = eval {
    open my $fh, '<', $t->dir . '/down.json' or die; local $/;
    json()->decode(<$fh>);
} // {};
is($down->{status}, 503, 'with the broker down a trigger gets 503');

my $ready = wait_until('readiness fails', 30, sub {
    my $r = $t->http_json(GET => '/health', timeout => 5);
    $r->{status} == 503 ? $r : undef;
});
ok($ready, 'readiness turns 503 while the broker is down');
ok($ready && !$ready->{json}{checks}{kafka}{ok}, 'and names the kafka check');
is($t->http_json(GET => '/health?live', timeout => 5)->{status}, 200,
   'while liveness stays 200');
like($down->{retry_after} // '', qr/^\d+$/, 'with Retry-After');
is($down->{body}{error}, 'kafka_unavailable', 'and a JSON error code');
ok(length($down->{body}{detail} // ''), 'and a detail');

system('bash', $stack, 'start', 'kafka') == 0
    or BAIL_OUT('cannot restart the stack\'s Kafka');

my $status = wait_until('ingestion resumes', 90, sub {
    my $r = post('after-' . int(time * 1000));
    $r->{status} == 202 ? 202 : undef;
});
is($status, 202, 'after the broker returns, triggers are accepted again');

ok(wait_until('readiness returns', 30, sub {
    $t->http_json(GET => '/health', timeout => 5)->{status} == 200;
}), 'and readiness is 200 again');

my %ids = map { (eval { json()->decode($_->{payload})->{trigger_id} } // '') => 1 }
          kafka_consume($topic);
ok($ids{before}, 'the trigger accepted before the outage is in Kafka');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts in the error log');
unlike($t->error_log, qr/exited on signal/, 'no worker died');

done_testing;
