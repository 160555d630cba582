#!/usr/bin/perl

# gdrive_dlq's listing over a DLQ topic of 64 partitions: the newest
# "limit" records across all of them, newest first, kept in a heap of
# "limit" (not limit x partitions whole records).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(kafka_consume unique_name repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('wide');
my $tool = repo_root() . '/t/stack/kafka-tool.sh';
my $out = `$tool topics --bootstrap-server $ENV{KAFKA_BOOTSTRAP_SERVERS} --create --topic $topic.dlq --partitions 64 --replication-factor 1 2>&1`;
is($?, 0, 'a DLQ topic of 64 partitions') or diag $out;

# 640 records, ten a partition, in time order
open my $fh, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', "$topic.dlq", '-K', "\t",
    '-X', 'partitioner=murmur2_random' or die "kcat: $!";
for my $i (1 .. 640) {
    printf $fh "key-%d\t{\"trigger_id\":\"dead-%04d\",\"integration_id\":\"i\",\"action\":\"sync_changes\"}\n", $i, $i;
}
close $fh or die "kcat: $?";

my $t = GDrive::Test->new(http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_topic $topic;
    gdrive_kafka_dlq_topic $topic.dlq;
    gdrive_kafka_group group-$topic;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /dlq { gdrive_dlq; }
    }
EOF
$t->run;

my @all = sort { $b->{timestamp} <=> $a->{timestamp} } kafka_consume("$topic.dlq");
is(scalar @all, 640, 'all 640 records are there');
my %parts = map { $_->{partition} => 1 } @all;
cmp_ok(scalar keys %parts, '>', 32, 'spread over the partitions');

for my $limit (1, 25, 1000) {
    my $r = $t->http_json(GET => "/dlq?limit=$limit", timeout => 60);
    is($r->{status}, 200, "GET limit=$limit");
    my @got = @{ $r->{json}{records} // [] };
    my $want = $limit < 640 ? $limit : 640;
    is(scalar @got, $want, "the $want newest records");
    my @ts = map { $_->{timestamp} } @got;
    is_deeply(\@ts, [sort { $b <=> $a } @ts], 'newest first');
    cmp_ok($ts[-1] // 0, '>=', $all[$want - 1]{timestamp}, 'and none older than the newest ones');
}

is_deeply([$t->alerts], [], 'no alerts');

done_testing;
