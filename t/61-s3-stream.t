#!/usr/bin/perl

# One PUT streamed from the part buffers: with gdrive_s3_multipart_threshold
# above the buffer size, a file of known size below the threshold goes to
# S3 as a single PUT that curl reads from the buffers as the download fills
# them.  Sizes on both sides of a buffer and of the threshold; Drive's md5
# sent as Content-MD5 (S3 refuses other content: checksum_mismatch, nothing
# stored); a download cut in the middle (the PUT ends unfinished, nothing
# stored, the job tries again); S3 failing or refusing the PUT; memory
# bounded by the buffers.  The real S3 server, behind the fault proxy.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines kafka_json_by_id
                    unique_name wait_until emulator emulator_content
                    s3_object s3_request stack_env json fault_proxy proc_memory
                    consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $env = { %{ stack_env() }, %ENV };

my ($proxy, $proxy_api) = fault_proxy($env->{S3_ENDPOINT});
sub proxy { $proxy_api->(@_) }

my $topic = unique_name('s3s');
my $prefix = "$topic/";
my $run = unique_name('ss');
my $int = "int-$run";
my $MiB = 1024 * 1024;

my $t = GDrive::Test->new(workers => 2, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_kafka_session_timeout 6s;
    gdrive_retry attempts=3 base=50ms max=200ms;
    gdrive_read_timeout 3s;
    gdrive_rate_limit 500r/s;
    gdrive_stream_buffers 3 5m;
    gdrive_s3_multipart_threshold 40m;
    gdrive_s3_endpoint $proxy;
    gdrive_s3_prefix $prefix;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF

emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });
kafka_produce_lines($topic, ['w', qq({"trigger_id":"warm-$run","integration_id":"$int","action":"sync_changes"})]);
$t->run;

my $n = 0;

sub trigger {
    my (%f) = @_;
    my $id = sprintf '%s-%03d', $run, ++$n;
    kafka_produce_lines($topic, [$int, $JSON->encode({ trigger_id => $id, integration_id => $int,
                                                       action => 'sync_file', %f })]);
    return $id;
}

sub outcome { job_outcome($topic, @_) }

sub put_requests {      # the PUTs of a file that reached the proxy
    my ($id) = @_;
    return grep { $_->{method} eq 'PUT' && $_->{url} =~ /\Q$id\E/ } @{ proxy(GET => '/requests') };
}

sub head {              # status and ETag of a key
    my ($key) = @_;
    my ($code, $out) = s3_request('HEAD', "/$env->{S3_BUCKET_NAME}/$key", headers => 1);
    my ($etag) = $out =~ /^etag:\s*"?([^"\r\n]*)"?/mi;
    return ($code, $etag);
}

ok(wait_until('warm-up', 60, sub { kafka_json_by_id("$topic.result")->{"warm-$run"} }),
   'the workers are up');
# and both hold partitions: a rebalance later would deliver a trigger again
ok(wait_until('partitions shared', 60, sub {
    my $s = $t->http_json(GET => '/status')->{json} // {};
    my @w = @{ $s->{workers} // [] };
    @w == 2 && !grep { !@{ $_->{partitions} // [] } } @w;
}), 'both workers hold partitions');

# --- sizes ---------------------------------------------------------------------

for my $case (['below a buffer' => 5 * $MiB - 1, 'buffered'],
              ['one buffer' => 5 * $MiB, 'streamed'],
              ['4.6 buffers' => 23 * $MiB + 3, 'streamed'],
              ['the threshold' => 40 * $MiB, 'multipart'])
{
    my ($what, $size, $how) = @$case;
    my $f = drive_file(name => "$what.bin", size => $size);
    proxy(DELETE => '/requests');
    my $o = outcome(trigger(file_id => $f->{id}), 120);
    my $r = $o->{result} // {};
    is($r->{status}, 'uploaded', "$what: uploaded") or diag explain $o;
    my $want = emulator_content($f->{id});
    my $object = s3_object($r->{payload}{key} // '');
    ok(defined $object && length $object == $size && sha256_hex($object) eq sha256_hex($want),
       "$what: the object is the file, byte for byte");
    is($r->{payload}{sha256}, sha256_hex($want), "$what: the result has its sha256");
    is($r->{payload}{md5}, md5_hex($want), "$what: and its md5");
    my @puts = put_requests($f->{id});
    if ($how eq 'multipart') {
        is($r->{payload}{parts}, 8, "$what: multipart, 8 parts");
        next;
    }
    is(scalar @puts, 1, "$what: one PUT") or diag explain \@puts;
    unlike($puts[0]{url} // '', qr/partNumber/, "$what: not a part");
    my (undef, $etag) = head($r->{payload}{key});
    is($etag, md5_hex($want), "$what: S3's ETag is the content's md5 (one PUT, Content-MD5)");
}

# --- Drive's md5 is the PUT's Content-MD5 ----------------------------------------

sub listed_sizes {      # the sizes of the objects whose keys start with this
    my ($key) = @_;
    my ($code, $xml) = s3_request(GET => "/$env->{S3_BUCKET_NAME}?list-type=2&prefix=" . ($key =~ s{/}{%2F}gr));
    $code eq '200' or BAIL_OUT("S3 does not list: $code $xml");
    return $xml =~ m{<Size>(\d+)</Size>}g;
}

sub stored {            # whether any object's key starts with this
    my ($key) = @_;
    my ($code, $xml) = s3_request(GET => "/$env->{S3_BUCKET_NAME}?list-type=2&prefix=" . ($key =~ s{/}{%2F}gr));
    $code eq '200' or BAIL_OUT("S3 does not list: $code $xml");
    return $xml =~ /<Key>/;
}

my $bad = drive_file(name => 'bad-md5.bin', size => 12 * $MiB, md5Checksum => '0123456789abcdef0123456789abcdef');
proxy(DELETE => '/requests');
my $o = outcome(trigger(file_id => $bad->{id}), 120);
is($o->{dead}{headers}{'gdrive.error.code'}, 'checksum_mismatch',
   'content that is not what Drive reported: S3 refuses it, checksum_mismatch') or diag explain $o;
is($o->{dead}{headers}{'gdrive.error.attempts'}, 3, 'after every attempt (a transient error)');
ok(scalar(grep { ($_->{status} // 0) == 400 } put_requests($bad->{id})), 'S3 itself refused the PUTs');
ok(!stored("${prefix}$int/$bad->{id}"), 'and nothing is stored');

# --- a download cut in the middle ---------------------------------------------------

my $cut = drive_file(name => 'cut.bin', size => 18 * $MiB);
emulator(POST => '/faults', { endpoint => 'files.media', file_id => $cut->{id},
                              truncate_after_bytes => 7 * $MiB, times => 1 });
$o = outcome(trigger(file_id => $cut->{id}), 120);
is($o->{result}{status}, 'uploaded', 'a download cut in the middle is stored after a retry') or diag explain $o;
cmp_ok($o->{result}{attempts}, '>=', 2, 'by a second attempt');
ok(sha256_hex(s3_object($o->{result}{payload}{key}) // '') eq sha256_hex(emulator_content($cut->{id})),
   'the object is whole');
ok(stored("${prefix}$int/$cut->{id}"), 'and listed');

# every byte comes, but the download does not end (chunked, its last
# chunk never sent): the PUT's last byte waits for the download's end, so
# S3 stores nothing until the job's next attempt
my $held = drive_file(name => 'held.bin', size => 12 * $MiB);
emulator(POST => '/faults', { endpoint => 'files.media', file_id => $held->{id},
                              stall_after_bytes => 12 * $MiB, chunked => JSON::PP::true(), times => 1 });
my $since = int(time * 1000);
my $hid = trigger(file_id => $held->{id});
# (only this trigger's requests: the whole log would take the test longer
# to read than the stalled download lasts)
ok(wait_until('the download under way', 60, sub {
    grep { $_->{path} =~ /\Q$held->{id}\E/ }
        @{ emulator(GET => "/requests?endpoint=files.media&since=$since")->{requests} // [] };
}), 'the download of a file that never ends has started');
sleep 1.5;
# (the store may list the unfinished PUT's temporary object: not whole)
ok(!grep({ $_ == 12 * $MiB } listed_sizes("${prefix}$int/$held->{id}")),
   'with every byte sent to the PUT but one, nothing is stored');
$o = outcome($hid, 120);
is($o->{result}{status}, 'uploaded', 'the job stores it on its next attempt') or diag explain $o;
cmp_ok($o->{result}{attempts}, '>=', 2, 'not on the first');
is($o->{result}{payload}{bytes}, 12 * $MiB, 'the result counts every byte');
is($o->{result}{payload}{sha256}, sha256_hex(emulator_content($held->{id})), 'and has the sha256');

# cut after more than the buffers hold: the PUT has sent some of it
my $never = drive_file(name => 'never.bin', size => 24 * $MiB);
emulator(POST => '/faults', { endpoint => 'files.media', file_id => $never->{id},
                              truncate_after_bytes => 17 * $MiB, times => -1 });
$o = outcome(trigger(file_id => $never->{id}), 120);
ok($o->{dead}, 'a download that is always cut goes to the DLQ') or diag explain $o;
# S3 drops an unfinished PUT once it sees the connection go
ok(wait_until('nothing stored', 30, sub { !stored("${prefix}$int/$never->{id}") }),
   'and no part of it is stored')
    or diag "$never->{id}: " . (s3_request(GET => "/$env->{S3_BUCKET_NAME}?list-type=2&prefix=" . ("${prefix}$int/$never->{id}" =~ s{/}{%2F}gr)))[1];
ok(scalar(grep { $_->{method} eq 'PUT' } put_requests($never->{id})), 'though its PUTs had started')
    or diag explain [$o, proxy(GET => '/requests')];
emulator(DELETE => '/faults');

# --- S3 failing or refusing the PUT ---------------------------------------------------

my $flaky = drive_file(name => 'flaky.bin', size => 12 * $MiB);
proxy(DELETE => '/requests');
proxy(POST => '/faults', { method => 'PUT', match => $flaky->{id}, status => 500, times => 1 });
$o = outcome(trigger(file_id => $flaky->{id}), 120);
is($o->{result}{status}, 'uploaded', 'a streamed PUT failing with 500: the job tries again and stores it')
    or diag explain $o;
cmp_ok($o->{result}{attempts}, '>=', 2, 'in a second attempt');
ok(sha256_hex(s3_object($o->{result}{payload}{key}) // '') eq sha256_hex(emulator_content($flaky->{id})),
   'the object is whole');
is(scalar(grep { ($_->{status} // 0) == 500 } put_requests($flaky->{id})), 1, 'the 500 did happen');

my $denied = drive_file(name => 'denied.bin', size => 12 * $MiB);
proxy(POST => '/faults', { method => 'PUT', match => $denied->{id}, status => 403,
                           code => 'AccessDenied', times => -1 });
$o = outcome(trigger(file_id => $denied->{id}), 120);
is($o->{dead}{headers}{'gdrive.error.code'}, 's3_access_denied', 'a streamed PUT refused with 403: s3_access_denied');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'at once');
proxy(DELETE => '/faults');

# --- bounded memory ------------------------------------------------------------------

my $big = drive_file(name => 'big.bin', size => 600 * $MiB);
$t->stop;
my $t2 = GDrive::Test->new(workers => 1, http => $t->{http} =~ s/gdrive_s3_multipart_threshold 40m/gdrive_s3_multipart_threshold 1g/r);
$t2->run;
my $pid;
ok(wait_until('a worker', 30, sub { ($pid) = $t2->worker_pids; $pid }), 'the worker runs');
ok(wait_until('the worker joins', 60, sub {
    my $s = $t2->http_json(GET => '/status')->{json} // {};
    grep { @{ $_->{partitions} // [] } } @{ $s->{workers} // [] };
}), 'one worker holds the partitions');
emulator(GET => "/files/$big->{id}?checksums=true");     # checksums ahead
my $base = proc_memory($pid);
my $peak = $base;
my $bid = trigger(file_id => $big->{id});
my $done;
my $deadline = time + 300;
while (!$done && time < $deadline) {
    my $r = proc_memory($pid) // last;
    $peak = $r if $r > $peak;
    $done = kafka_json_by_id("$topic.result")->{$bid} if int(time * 10) % 10 == 0;
    sleep 0.05;
}
is($done->{status}, 'uploaded', 'a 600 MiB file is stored with one streamed PUT');
is($done->{payload}{parts}, 0, 'not in parts');
SKIP: {
    # a sanitizer's shadow memory and quarantine are not the worker's
    skip 'memory is not the worker\'s under sanitizers', 1 if $ENV{GDRIVE_NGINX_PRELOAD};
    cmp_ok($peak - $base, '<=', 3 * 5 * $MiB + 16 * $MiB,
           'worker memory grew by no more than the buffers and 16 MiB')
        or diag "grew by " . int(($peak - $base) / $MiB) . " MiB";
}

is_deeply([$t->alerts, $t2->alerts], [], 'nginx logged no alert');

done_testing;
