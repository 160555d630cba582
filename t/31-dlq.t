#!/usr/bin/perl

# gdrive_dlq against the real broker: GET lists the newest dead letters with
# their headers; POST replays them to the trigger topic and moves its own
# position only after the trigger topic acknowledged them, so a second
# call replays nothing twice.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GDrive::Test qw(kafka_produce kafka_consume unique_name wait_until json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('dlqtool');

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

my @dead = map {
    [ "int-$_", qq({"trigger_id":"dead-$_","integration_id":"int-$_","action":"sync_changes"}),
      { 'gdrive.error.code' => 'upstream_error', '__connect.errors.topic' => $topic,
        'origin' => "test-$_" } ]
} 1 .. 5;
kafka_produce("$topic.dlq", @dead);
kafka_produce("$topic.dlq", ['bin', "\xff\xfe\x00"]);

my $r = $t->http_json(GET => '/dlq?limit=50');
is($r->{status}, 200, 'GET lists the DLQ');
is($r->{json}{count}, 6, 'all six records');
my %by_key = map { ($_->{key} // '') => $_ } @{ $r->{json}{records} // [] };
is($by_key{'int-3'}{value}, $dead[2][1], 'a record\'s value as text');
is($by_key{'int-3'}{headers}{'gdrive.error.code'}, 'upstream_error',
   'with its headers decoded');
is($by_key{bin}{value_base64}, '//4A', 'a binary value in base64');
my @ts = map { $_->{timestamp} } @{ $r->{json}{records} // [] };
is_deeply(\@ts, [sort { $b <=> $a } @ts], 'newest first');

$r = $t->http_json(GET => '/dlq?limit=2');
is($r->{json}{count}, 2, 'limit is honoured');

is($t->http_json(GET => '/dlq?limit=0')->{status}, 400, 'a bad limit is 400');
$r = $t->http_json(PUT => '/dlq');
is($r->{status}, 405, 'PUT is 405');
like($r->{headers}{allow} // '', qr/POST/, 'with Allow');

sub replay {
    my ($body) = @_;
    return $t->http_json(POST => '/dlq', body => $body,
                         headers => { 'content-type' => 'application/json' });
}

$r = replay('nonsense');
is($r->{status}, 400, 'a bad replay request is 400');
is($r->{json}{error}, 'invalid_request', 'with a JSON error');

# a state-changing request is JSON and says so: no replay from a form
$r = $t->http_json(POST => '/dlq', body => '{"count":1}',
                   headers => { 'content-type' => 'application/x-www-form-urlencoded' });
is($r->{status}, 415, 'a replay posted as a form is 415');
is($r->{json}{error}, 'unsupported_media_type', 'with a JSON error');
is($t->http_json(POST => '/dlq', body => '{"count":1}')->{status}, 415,
   'a replay without a Content-Type is 415');
is(replay('')->{status}, 415, 'an empty replay request is 415');

# numbers are whole and in range: no overflow turns a range into a count
for my $bad ('{"partition":4294967295,"from":0,"to":1}', '{"partition":-1,"from":0,"to":1}',
             '{"partition":0,"from":-5,"to":1}', '{"partition":0,"from":3,"to":1}',
             '{"partition":0.5,"from":0,"to":1}', '{"partition":"0","from":0,"to":1}',
             '{"partition":0,"from":0}', '{"count":0}', '{"count":100001}', '{"count":2.5}',
             '{"count":"2"}', '{"count":-1}', '{"count":99999999999999999999}',
             '{"count":1,"partition":0,"from":0,"to":0}', '{"partition":0,"from":0,"to":100000}',
             '[1]') {
    is(replay($bad)->{status}, 400, "400 for $bad");
}
for my $bad ('0', '-1', '1.5', 'x', '99999999999999999999', '1001') {
    is($t->http_json(GET => "/dlq?limit=$bad")->{status}, 400, "400 for GET limit=$bad");
}

# --- replay ------------------------------------------------------------------

$r = replay('{"count":2}');
is($r->{status}, 200, 'a replay of two');
is($r->{json}{replayed}, 2, 'replays two');
ok($r->{json}{position_committed}, 'and commits its position');

$r = replay('{"count":100}');
is($r->{json}{replayed}, 4, 'the next call replays the other four');

$r = replay('{}');
is($r->{json}{replayed}, 0, 'a third call finds nothing left');

my @back = kafka_consume($topic);
is(scalar @back, 6, 'six records on the trigger topic: none lost, none doubled');
my ($three) = grep { ($_->{key} // '') eq 'int-3' } @back;
is($three->{payload}, $dead[2][1], 'the value byte for byte');
is($three->{headers}{origin}, 'test-3', 'original headers kept');
ok(!exists $three->{headers}{'gdrive.error.code'}
   && !exists $three->{headers}{'__connect.errors.topic'},
   'the failure\'s headers left behind');
like($three->{headers}{'gdrive.replayed_from'} // '', qr{^\Q$topic\E\.dlq/\d+/\d+$},
     'and where it came from');
my ($bin) = grep { ($_->{key} // '') eq 'bin' } @back;
is($bin->{payload}, "\xff\xfe\x00", 'a binary value byte for byte');

# an explicit range is replayed as asked and leaves the position alone
my $p = $three->{headers}{'gdrive.replayed_from'} =~ m{/(\d+)/(\d+)$} ? [$1, $2] : [0, 0];
$r = replay(qq({"partition":$p->[0],"from":$p->[1],"to":$p->[1]}));
is($r->{json}{replayed}, 1, 'a range of one record is replayed');
ok(!$r->{json}{position_committed}, 'without moving the position');
is(replay('{}')->{json}{replayed}, 0,
   'the position is where it was');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts');

done_testing;
