#!/usr/bin/perl

# gdrive_global_rate_limit scope=fleet: each nginx instance of a consumer
# group takes a share of the global rate in proportion to the partitions
# of the trigger topic its workers hold.  One instance alone has all of
# it; a second one joins and the two shares sum to the global rate; it
# quits and the first has all of it again.  The status page and the
# metrics say which instance and member holds what.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(unique_name job_outcome wait_until consumer_conf repo_root emulator
                    drive_file);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

# nginx -t: the scope is host or fleet, and only the global limit has one

for my $bad (['scope=cluster', qr/invalid value "200r\/s" in "gdrive_global_rate_limit" directive: scope="cluster" must be "host" or "fleet"/],
             ['zone=x', qr/"gdrive_global_rate_limit" directive: expected burst=N or scope=host\|fleet after the rate/])
{
    my ($rc, $out) = GDrive::Test->new(clean_env => 1, http => <<"EOF")->test_conf;
    gdrive_zone gdrive 4m;
    gdrive_kafka_brokers 127.0.0.1:9092;
    gdrive_global_rate_limit 200r/s $bad->[0];
    server { listen 127.0.0.1:%%PORT%%; location /t { gdrive_trigger; } }
EOF
    isnt($rc, 0, "nginx -t refuses $bad->[0]");
    like($out, $bad->[1], 'and says what is wrong') or diag $out;
}

my ($rc, $out) = GDrive::Test->new(clean_env => 1, http => <<'EOF')->test_conf;
    gdrive_zone gdrive 4m;
    gdrive_kafka_brokers 127.0.0.1:9092;
    gdrive_rate_limit 10r/s scope=fleet;
    server { listen 127.0.0.1:%%PORT%%; location /t { gdrive_trigger; } }
EOF
like($out, qr/"gdrive_rate_limit" directive: expected burst=N after the rate/,
     'a per-integration limit has no scope') or diag $out;

# the share needs the partition count, which librdkafka's statistics bring
($rc, $out) = GDrive::Test->new(clean_env => 1, http => <<'EOF')->test_conf;
    gdrive_zone gdrive 4m;
    gdrive_kafka_brokers 127.0.0.1:9092;
    gdrive_kafka_option statistics.interval.ms 0;
    gdrive_global_rate_limit 200r/s scope=fleet;
    server { listen 127.0.0.1:%%PORT%%; location /t { gdrive_trigger; } }
EOF
isnt($rc, 0, 'nginx -t refuses scope=fleet without statistics');
like($out, qr/"gdrive_global_rate_limit" scope=fleet needs librdkafka's statistics, which "gdrive_kafka_option statistics.interval.ms 0" turns off/,
     'and says why') or diag $out;

my $topic = unique_name('fleet');
my $tool = repo_root() . '/t/stack/kafka-tool.sh';
$out = `bash $tool topics --bootstrap-server $ENV{KAFKA_BOOTSTRAP_SERVERS} --create --topic $topic --partitions 6 --replication-factor 1 2>&1`;
is($?, 0, 'a trigger topic of 6 partitions') or diag $out;

sub conf {
    my ($name) = @_;
    return <<"EOF";
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_global_rate_limit 120r/s burst=12 scope=fleet;
    gdrive_instance $name;
    gdrive_shutdown_timeout 1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
        location = /metrics { gdrive_metrics; }
        location = /health { gdrive_health; }
    }
EOF
}

my %env = (CONTROL_PLANE_URL => undef);
my $a = GDrive::Test->new(workers => 2, env => \%env, http => conf('fleet-a'))->run;

sub status { $_[0]->http_json(GET => '/status?format=json')->{json} // {} }

sub share {
    my ($t) = @_;
    my $s = status($t);
    my $l = $s->{rate_limits} // {};
    my $held = 0;
    $held += $_->{partitions_held} // 0 for @{ $s->{workers} // [] };
    return { rate => $l->{global_share_per_second}, burst => $l->{global_share_burst},
             held => $l->{partitions_held}, total => $l->{partitions_total},
             workers_held => $held, status => $s };
}

my $s = wait_until('the first instance holds all', 60, sub {
    my $s = share($a);
    ($s->{held} // 0) == 6 && ($s->{total} // 0) == 6 ? $s : undef;
});
ok($s, 'alone, the instance holds 6 of 6 partitions') or diag explain share($a);
is($s->{rate}, 120, 'and has the whole global rate');
is($s->{burst}, 12, 'and the whole burst');
is($s->{status}{rate_limits}{global_scope}, 'fleet', 'the status page names the scope');
is($s->{workers_held}, 6, 'its workers hold the 6 between them');

# who holds what: the instance's name, each worker's member id

my $st = $s->{status};
is($st->{instance}, 'fleet-a', 'the status page names the instance');
is(scalar @{ $st->{workers} }, 2, 'two workers');
for my $w (@{ $st->{workers} }) {
    is($w->{host}, 'fleet-a', "worker $w->{worker}: its host is the instance");
    like($w->{member_id}, qr/^fleet-a-/, "worker $w->{worker}: a member id from client.id");
    is($w->{partitions_held}, scalar @{ $w->{partitions} }, "worker $w->{worker}: as many held as listed");
    ok(!grep({ $_->{topic} ne $topic } @{ $w->{partitions} }), "worker $w->{worker}: partitions of the topic");
}

sub metrics { $_[0]->http(GET => '/metrics')->{content} // '' }

my $m = metrics($a);
for my $w (@{ $st->{workers} }) {
    like($m, qr/^gdrive_member_info\{worker="$w->{worker}",member_id="\Q$w->{member_id}\E",host="fleet-a"\} 1$/m,
         "gdrive_member_info names worker $w->{worker}'s member and host");
    like($m, qr/^gdrive_partitions_assigned\{worker="$w->{worker}"\} $w->{partitions_held}$/m,
         "gdrive_partitions_assigned of worker $w->{worker}");
}
like($m, qr/^gdrive_global_rate_share 120\.000$/m, 'gdrive_global_rate_share: the whole rate');
like($m, qr/^gdrive_topic_partitions 6$/m, 'gdrive_topic_partitions');
like($m, qr/^gdrive_holds_relearned_total 0$/m, 'no hold re-learned yet');

my $h = $a->http_json(GET => '/health')->{json}{checks}{rate_limit} // {};
is($h->{scope}, 'fleet', 'health: the rate_limit check is of the fleet share');
is($h->{limit_per_second}, 120, 'health: against the share');
is($h->{partitions_held} . '/' . $h->{partitions_total}, '6/6', 'health: partitions held of the topic');

my $b = GDrive::Test->new(workers => 1, env => \%env, http => conf('fleet-b'))->run;

my ($sa, $sb);
ok(wait_until('shared', 90, sub {
    ($sa, $sb) = (share($a), share($b));
    ($sa->{held} // 0) + ($sb->{held} // 0) == 6 && ($sa->{held} // 0) > 0
        && ($sb->{held} // 0) > 0 && ($sb->{total} // 0) == 6
        && $sa->{workers_held} == $sa->{held} && $sb->{workers_held} == $sb->{held};
}), 'after the rebalance both instances hold partitions, 6 in all')
    or diag explain [share($a), share($b)];
is($sa->{rate}, 120 * $sa->{held} / 6, "the first one's share is 120 x $sa->{held}/6");
is($sb->{rate}, 120 * $sb->{held} / 6, "the second one's share is 120 x $sb->{held}/6");
is($sa->{rate} + $sb->{rate}, 120, 'the shares sum to the global rate');
like(metrics($b), qr/^gdrive_global_rate_share \Q@{[ sprintf '%.3f', $sb->{rate} ]}\E$/m,
     "the second one's gdrive_global_rate_share");
is($b->http_json(GET => '/health')->{json}{checks}{rate_limit}{limit_per_second}, $sb->{rate},
   "the second one's health compares against its share");

# A hold learned on a partition the second instance took over: the
# first refused request teaches it again, and it is counted.

my ($wb) = @{ $sb->{status}{workers} };
my $p = $wb->{partitions}[0]{partition};
my $file = drive_file(name => 'fleet.txt', size => 100);
emulator(POST => '/faults', { endpoint => 'files.get', status => 429,
                              retry_after => 30, reason => 'rateLimitExceeded',
                              times => 1 });
my $run = unique_name('hold');
open my $kc, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', $topic,
    '-p', $p, '-K', "\t" or die "kcat: $!";
print $kc qq(int-$run\t{"trigger_id":"$run","integration_id":"int-$run","action":"sync_file","file_id":"$file->{id}"}\n);
close $kc or die "kcat: $?";

ok(wait_until('re-learned', 60, sub {
    metrics($b) =~ /^gdrive_holds_relearned_total 1$/m;
}), "the second instance counts the hold it learned on partition $p, which it took over")
    or diag metrics($b) =~ /^(gdrive_holds_relearned_total.*|gdrive_google_requests_total\{endpoint="files.get".*)$/mg;
like(metrics($a), qr/^gdrive_holds_relearned_total 0$/m, 'the first one counts none');
emulator(DELETE => '/faults');

$b->stop;

ok(wait_until('back to all', 90, sub {
    my $s = share($a);
    ($s->{held} // 0) == 6 && $s->{rate} == 120;
}), 'the second one quits: the first one is back to the whole rate')
    or diag explain share($a);

# a reload: the new workers start before they know the partition count;
# the zone keeps the last one, so that the share is whole again as soon as
# they hold the partitions, and a trigger taken then reaches Drive
my @old = $a->worker_pids;
$a->reload;
ok(wait_until('reloaded', 60, sub {
    my %o = map { $_ => 1 } @old;
    my @new = $a->worker_pids;
    my $s = share($a);
    @new && !(grep { $o{$_} } @new) && ($s->{held} // 0) == 6
        && $s->{rate} == 120;
}), 'after a reload the new workers hold all and have the whole rate')
    or diag explain share($a);
my $after = drive_file(name => 'after-reload.txt', size => 100);
my $rid = unique_name('reload');
open $kc, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', $topic,
    '-K', "\t" or die "kcat: $!";
print $kc qq(int-$rid\t{"trigger_id":"$rid","integration_id":"int-$rid","action":"sync_file","file_id":"$after->{id}"}\n);
close $kc or die "kcat: $?";
is(job_outcome($topic, $rid, 60)->{result}{status}, 'uploaded',
   'and a trigger taken after it is synced');

$a->stop;
is_deeply([map { $_->alerts } $a, $b], [], 'no alerts');

done_testing;
