#!/usr/bin/perl

# Two nginx instances with two workers each share one 4-partition topic:
# every partition is owned by exactly one worker process, and every
# message is processed once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name wait_until
                    json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('group');

# the topic exists (4 partitions, the broker's default) before anyone joins
kafka_produce_lines($topic, ['w', '{"trigger_id":"warm","integration_id":"w","action":"sync_changes"}']);

my @nginx = map {
    GDrive::Test->new(workers => 2, env => { CONTROL_PLANE_URL => undef },
                      http => <<"EOF")->run
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF
} 1 .. 2;

sub owners {
    my %owner;
    for my $n (0 .. $#nginx) {
        for my $w (@{ $nginx[$n]->http_json(GET => '/status')->{json}{workers} // [] }) {
            push @{ $owner{$_->{partition}} }, "$n/$w->{pid}" for @{ $w->{partitions} };
        }
    }
    return \%owner;
}

my $owners = wait_until('four members share four partitions', 60, sub {
    my $o = owners();
    my %members = map { $_->[0] => 1 } values %$o;
    (keys %$o == 4 && keys %members == 4 && !grep { @$_ != 1 } values %$o) ? $o : undef;
});
ok($owners, 'each of the 4 partitions is owned by one worker, each worker owns one')
    or diag explain owners();

my @ids = map { "g-$_" } 1 .. 200;
kafka_produce_lines($topic, map { ["int-" . ($_ % 23),
    qq({"trigger_id":"$ids[$_]","integration_id":"int-) . ($_ % 23)
    . qq(","action":"sync_changes"})] } 0 .. $#ids);

my $counts = wait_until('all processed', 90, sub {
    my %n;
    for (kafka_consume("$topic.result")) {
        my $r = eval { json()->decode($_->{payload}) } or next;
        $n{$r->{trigger_id}}++;
    }
    (!grep { !$n{$_} } @ids) ? \%n : undef;
});
ok($counts, 'all 200 messages are processed');
is(scalar(grep { ($counts->{$_} // 0) != 1 } @ids), 0,
   'each exactly once (no rebalance happened meanwhile)');

my $total = 0;
for my $n (@nginx) {
    $total += $_->{results} for @{ $n->http_json(GET => '/status')->{json}{workers} // [] };
}
cmp_ok($total, '>=', 200, 'the workers count what they did');

$_->stop for @nginx;
is_deeply([map { $_->alerts } @nginx], [], 'no alerts');

done_testing;
