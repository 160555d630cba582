#!/usr/bin/perl

# gdrive_trigger against the real broker of the stack: a 202 means the
# trigger is in Kafka, byte for byte, under its integration's key; bad
# input gets a JSON error; nothing accepted is lost.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(kafka_consume unique_name http_raw wait_until json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('trigger');

my $t = GDrive::Test->new(workers => 2, http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_topic $topic;
    gdrive_kafka_delivery_timeout 5s;
    gdrive_trigger_max_batch 50;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
        location = /small { client_max_body_size 1k; gdrive_trigger; }
    }
EOF
$t->run;

my $JSON = json();
my %ct = ('content-type' => 'application/json');

sub post {
    my ($body, %h) = @_;
    return $t->http_json(POST => $h{path} // '/triggers', body => $body,
                         headers => { %ct, %{ $h{headers} // {} } });
}

sub record_at {
    my ($p, $o) = @_;
    my ($rec) = kafka_consume($topic, partition => $p, offset => $o,
                              count => 1);
    return $rec;
}

# --- one trigger ------------------------------------------------------------

my $body = '{"trigger_id":"t-single.1","integration_id":"int-a",'
         . '"action":"sync_file","file_id":"1AbC_d-9", "extra": {"x": [1]}}';
my $r = post($body);
is($r->{status}, 202, 'a trigger is accepted');
is($r->{json}{trigger_id}, 't-single.1', 'the answer names the trigger');
is($r->{json}{topic}, $topic, 'and the topic');
like($r->{json}{offset}, qr/^\d+$/, 'and the offset Kafka gave it');

my $rec = record_at($r->{json}{partition}, $r->{json}{offset});
is($rec->{payload}, $body, 'the record is the body, byte for byte');
is($rec->{key}, 'int-a', 'keyed by integration_id');

# --- a batch ----------------------------------------------------------------

my @items = (
    '{"trigger_id":"t-batch-1","integration_id":"int-b","action":"sync_changes"}',
    '{"integration_id":"int-c","action":"sync_folder","folder_id":"F1","recursive":true}',
    '{"trigger_id":"t-batch-3","integration_id":"int-b","action":"sync_file","file_id":"x"}',
);
$r = post("[\n" . join(",\n  ", @items) . "\n]");
is($r->{status}, 202, 'a batch is accepted');
is(ref $r->{json}, 'ARRAY', 'with one answer per trigger');
is(scalar @{ $r->{json} // [] }, 3, 'three answers');

my @ans = @{ $r->{json} // [] };
is($ans[0]{trigger_id}, 't-batch-1', 'first id kept');
like($ans[1]{trigger_id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
     'a missing id is made, a UUID');

$rec = record_at($ans[0]{partition}, $ans[0]{offset});
is($rec->{payload}, $items[0], 'batch item 0 arrives byte for byte');
is($rec->{key}, 'int-b', 'with its key');
$rec = record_at($ans[2]{partition}, $ans[2]{offset});
is($rec->{payload}, $items[2], 'batch item 2 arrives byte for byte');
is($ans[0]{partition}, $ans[2]{partition},
   'one integration, one partition');

$rec = record_at($ans[1]{partition}, $ans[1]{offset});
my $made = eval { $JSON->decode($rec->{payload}) } // {};
is($made->{trigger_id}, $ans[1]{trigger_id},
   'the made id is in the record');
is($made->{folder_id}, 'F1', 'with the fields it came with');
is($rec->{key}, 'int-c', 'keyed by its integration');

# --- bad bodies -------------------------------------------------------------

my $ok = '{"integration_id":"i","action":"sync_changes"}';
my @bad = (
    ['not JSON',           'hello',                                    'invalid_message'],
    ['empty body',         '',                                         'invalid_message'],
    ['truncated',          '{"integration_id":"i","action":"sync_',     'invalid_message'],
    ['a string',           '"sync"',                                   'invalid_message'],
    ['a number',           '42',                                       'invalid_message'],
    ['null',               'null',                                     'invalid_message'],
    ['trailing garbage',   "$ok}",                                     'invalid_message'],
    ['empty object',       '{}',                                       'missing_field', 'integration_id'],
    ['no action',          '{"integration_id":"i"}',                   'missing_field', 'action'],
    ['unknown action',     '{"integration_id":"i","action":"rm"}',     'invalid_message', 'action'],
    ['action not string',  '{"integration_id":"i","action":1}',        'invalid_message', 'action'],
    ['id wrong type',      '{"integration_id":["i"],"action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['bad id charset',     '{"integration_id":"a b/c","action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['bad trigger id',     '{"trigger_id":"x y","integration_id":"i","action":"sync_changes"}', 'invalid_message', 'trigger_id'],
    ['oversized id',       '{"integration_id":"' . ('a' x 129) . '","action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['file_id missing',    '{"integration_id":"i","action":"sync_file"}', 'missing_field', 'file_id'],
    ['folder_id missing',  '{"integration_id":"i","action":"sync_folder"}', 'missing_field', 'folder_id'],
    ['bad file id',        '{"integration_id":"i","action":"sync_file","file_id":"../etc"}', 'invalid_message', 'file_id'],
    ['oversized file id',  '{"integration_id":"i","action":"sync_file","file_id":"' . ('f' x 201) . '"}', 'invalid_message', 'file_id'],
    ['recursive a string', '{"integration_id":"i","action":"sync_folder","folder_id":"f","recursive":"yes"}', 'invalid_message', 'recursive'],
    ['deep nesting',       '{"integration_id":"i","action":"sync_changes","x":' . ('[' x 40) . (']' x 40) . '}', 'invalid_message'],
    ['non-UTF-8',          "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"n\":\"\xff\xfe\"}", 'invalid_message'],
    ['duplicate key',      '{"integration_id":"i","integration_id":"j","action":"sync_changes"}', 'invalid_message'],
    ['empty array',        '[]',                                       'invalid_message'],
    ['array of numbers',   '[1,2]',                                    'invalid_message'],
    ['over-long batch',    '[' . join(',', ($ok) x 51) . ']',          'invalid_message'],
    ['unclosed batch',     "[$ok,$ok",                                 'invalid_message'],
    ['garbage after batch',"[$ok] x",                                  'invalid_message'],
    ['bad item in batch',  "[$ok,$ok,{\"integration_id\":\"i\"}]",     'missing_field', 'action', 2],
    ['oversized trigger',  '{"integration_id":"i","action":"sync_changes","pad":"' . ('p' x 70000) . '"}', 'invalid_message'],
    ['integration id "."',  '{"integration_id":".","action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['integration id ".."', '{"integration_id":"..","action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['trigger id ".."',     '{"trigger_id":"..","integration_id":"i","action":"sync_changes"}', 'invalid_message', 'trigger_id'],
    ['escaped duplicate id', '{"integration_id":"i","integration\\u005fid":"j","action":"sync_changes"}', 'invalid_message', 'integration_id'],
    ['metadata from outside', '{"integration_id":"i","action":"sync_file","file_id":"f","drive_file":{"id":"f","headRevisionId":"r"}}', 'invalid_message', 'drive_file'],
    ['metadata in a batch',   "[$ok,{\"integration_id\":\"i\",\"action\":\"sync_file\",\"file_id\":\"f\",\"drive_file\":{\"id\":\"f\"}}]", 'invalid_message', 'drive_file', 1],
    ['metadata not an object', '{"integration_id":"i","action":"sync_file","file_id":"f","drive_file":"f"}', 'invalid_message', 'drive_file'],
);

my $before = () = kafka_consume($topic);

for my $case (@bad) {
    my ($name, $b, $code, $field, $index) = @$case;
    $r = post($b);
    is($r->{status}, 400, "400: $name");
    is($r->{json}{error}, $code, "error code $code: $name");
    ok(length($r->{json}{detail} // ''), "a detail: $name");
    is($r->{json}{field}, $field, "names the field: $name") if $field;
    is($r->{json}{index}, $index, "names the item: $name") if defined $index;
}

my $after = () = kafka_consume($topic);
is($after, $before, 'no rejected trigger reached Kafka');

# --- method, media type, size -------------------------------------------------

$r = $t->http_json(GET => '/triggers');
is($r->{status}, 405, 'GET gets 405');
is($r->{headers}{allow}, 'POST', 'with Allow: POST');
is($r->{json}{error}, 'method_not_allowed', 'and a JSON error');

$r = $t->http_json(PUT => '/triggers', body => $ok, headers => \%ct);
is($r->{status}, 405, 'PUT gets 405');

$r = $t->http_json(POST => '/triggers', body => $ok,
                   headers => { 'content-type' => 'text/plain' });
is($r->{status}, 415, 'text/plain gets 415');
is($r->{json}{error}, 'unsupported_media_type', 'with a JSON error');

$r = $t->http_json(POST => '/triggers', body => $ok);
is($r->{status}, 415, 'no content type gets 415');

$r = $t->http_json(POST => '/triggers', body => $ok,
                   headers => { 'content-type' => 'application/jsonx' });
is($r->{status}, 415, 'application/jsonx is not JSON');

$r = post($ok =~ s/"i"/"i-charset"/r,
          headers => { 'content-type' => 'application/json; charset=utf-8' });
is($r->{status}, 202, 'application/json with a charset is JSON');

my $big = '{"integration_id":"i","action":"sync_changes","pad":"' . ('p' x 2000) . '"}';
$r = post($big, path => '/small');
is($r->{status}, 413, 'a body over client_max_body_size gets 413');
is($r->{json}{error}, 'payload_too_large', 'with a JSON error');

my ($st, $h, $b) = http_raw($t->port,
    "POST /small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $big, $big));
is($st, 413, 'a chunked body over the limit gets 413');
like($b, qr/"error":"payload_too_large"/, 'as JSON too');

($st, $h, $b) = http_raw($t->port,
    "POST /triggers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $ok, $ok));
is($st, 202, 'a chunked trigger is accepted');

# --- concurrency: N accepted, N in the topic ------------------------------------

my $clients = 8;
my $each = 40;
my $run = unique_name('c');
my @pids;
for my $c (1 .. $clients) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $accepted = 0;
        for my $i (1 .. $each) {
            my $res = HTTP::Tiny->new(keep_alive => 1)->post(
                $t->url('/triggers'), { headers => \%ct,
                content => qq({"trigger_id":"$run-$c-$i","integration_id":"int-$c",)
                         . qq("action":"sync_changes"}) });
            $accepted++ if $res->{status} == 202;
        }
        exit($accepted == $each ? 0 : 1);
    }
    push @pids, $pid;
}
my $failed = 0;
for (@pids) { waitpid $_, 0; $failed++ if $? }
is($failed, 0, "$clients clients each had $each triggers accepted");

my %seen = map { (eval { $JSON->decode($_->{payload})->{trigger_id} } // '') => 1 }
           kafka_consume($topic);
is(scalar(grep { /^\Q$run\E-/ } keys %seen), $clients * $each,
   'every accepted trigger is in the topic, once per id');

# --- clients that leave before the answer ------------------------------------------

for my $i (1 .. 30) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port) or next;
    my $trig = qq({"trigger_id":"$run-gone-$i","integration_id":"int-g","action":"sync_changes"});
    print $s "POST /triggers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           . "Content-Length: " . length($trig) . "\r\n\r\n$trig";
    close $s;
}
ok(wait_until('abandoned triggers arrive', 30, sub {
       my %ids = map { (eval { $JSON->decode($_->{payload})->{trigger_id} } // '') => 1 }
                 kafka_consume($topic);
       30 == grep { /^\Q$run\E-gone-/ } keys %ids;
   }), 'triggers of clients that left are still delivered');

$r = post('{"trigger_id":"after-gone","integration_id":"i","action":"sync_changes"}');
is($r->{status}, 202, 'the worker keeps serving');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts or crashes in the error log');
unlike($t->error_log, qr/exited on signal/, 'no worker died');

done_testing;
