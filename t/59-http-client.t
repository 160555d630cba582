#!/usr/bin/perl

# The worker's own HTTP/1.1 client (gdrive_http_client auto, the default):
# the Drive and S3 requests of a job go by it to an http origin with an IP
# address, on connections it keeps between requests; the token request
# stays curl's. Files arrive whole with chunked and with sized downloads;
# a kept connection that the server closes (its keep-alive timeout) costs
# no attempt; few connections serve many files. With gdrive_http_client
# curl, curl sends everything, and the same files arrive. nginx -t
# refuses any other value, naming the directive.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use IPC::Open2 qw(open2);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator
                    drive_file consumer_conf s3_object emulator_content
                    dns_server repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('h1');
my $int = unique_name('int-h1');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

sub conf {
    my ($client) = @_;
    return <<"EOF";
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 4;
    gdrive_rate_limit 1000r/s burst=100;
    gdrive_global_rate_limit 1000r/s burst=100;
    gdrive_retry attempts=3 base=50ms max=200ms;
    gdrive_google_api_debug on;
    $client
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF
}

my $n = 0;
sub sync {
    my (@files) = @_;
    my @ids;
    kafka_produce_lines($topic, map {
        my $id = 'h1-' . ++$n . "-$int";
        push @ids, $id;
        [$int, sprintf '{"trigger_id":"%s","integration_id":"%s","action":"sync_file","file_id":"%s"}',
                       $id, $int, $_->{id}]
    } @files);
    return map { job_outcome($topic, $_, 120) } @ids;
}

sub whole {
    my ($o, $file) = @_;
    my $key = $o->{result} ? $o->{result}{payload}{key} : undef;
    return $key && sha256_hex(s3_object($key) // '') eq sha256_hex(emulator_content($file->{id}));
}

# the client each request of the log went by: { what => { client => n } }
sub clients {
    my ($t) = @_;
    my %by;
    my $log = $t->error_log;
    $by{$1}{$2}++ while $log =~ /gdrive: http (.+?) -> \d+ in \d+ms by (the worker|curl)/g;
    return \%by;
}

my $t = GDrive::Test->new(workers => 1, http => conf(''));
$t->run;

# --- many files over kept connections ---------------------------------------

my @files = map { drive_file(name => "h1 $_.bin", size => 5000 + $_ * 37) } 1 .. 20;
my $before = emulator(GET => '/connections')->{accepted};
my @o = sync(@files);
# (job_outcome reads Kafka, not the emulator: the connections are the
# worker's, and the admin call that counts them)
my $opened = emulator(GET => '/connections')->{accepted} - $before - 1;
is(scalar(grep { ($_->{result}{status} // '') eq 'uploaded' } @o), 20, '20 files are uploaded');
is(scalar(grep { whole($o[$_], $files[$_]) } 0 .. $#files), 20, 'each object is its file, byte for byte');
is(scalar(grep { ($_->{result}{attempts} // 0) == 1 } @o), 20, 'each at its first attempt');

my $by = clients($t);
is_deeply([sort keys %{ $by->{$_} }], ['the worker'], "every $_ request went by the worker's client")
    for grep { exists $by->{$_} } 'files.get', 'files.media', 's3 head', 's3 put';
ok($by->{'files.media'}{'the worker'} && $by->{'s3 put'}{'the worker'}, 'downloads and uploads among them');
cmp_ok($opened, '<=', 8, "40 Google requests over $opened connections (at most 4 jobs at once, and the token's)");
my ($token) = grep { /token/ } keys %$by;
ok($token && !$by->{$token}{'the worker'}, "the token request stayed curl's (https and forms are curl's)");


# --- a chunked download -----------------------------------------------------

my $chunked = drive_file(name => 'chunked.bin', size => 300_000);
emulator(POST => '/faults', { endpoint => 'files.media', file_id => $chunked->{id}, chunked => JSON::PP::true(), times => 1 });
my ($oc) = sync($chunked);
is($oc->{result}{status}, 'uploaded', 'a chunked download is uploaded') or diag explain $oc;
ok(whole($oc, $chunked), 'whole');

# --- kept connections closed by the server ----------------------------------

emulator(POST => '/close-idle');
my $late = drive_file(name => 'after close.bin', size => 7000);
my ($ol) = sync($late);
is($ol->{result}{status}, 'uploaded', 'after the server closed the kept connections, a file is uploaded') or diag explain $ol;
is($ol->{result}{attempts}, 1, 'at its first attempt: the closed connections were not used');

is_deeply([$t->alerts], [], 'nginx logs no alert');
$t->stop;

# --- names, through nginx's resolver -----------------------------------------

my ($gport) = $ENV{GOOGLE_API_URL} =~ /:(\d+)/;
my ($sport) = $ENV{S3_ENDPOINT} =~ /:(\d+)/;
my $dns = dns_server(map { ("$_.h1.test" => '127.0.0.1') } qw(drive s3 other));
my $names = <<"EOF";
    resolver 127.0.0.1:$dns valid=1s ipv6=off;
    gdrive_google_api_url http://drive.h1.test:$gport;
    gdrive_s3_endpoint http://s3.h1.test:$sport;
EOF
my $tn = GDrive::Test->new(workers => 1, http => conf($names));
$tn->run;
my @nf = map { drive_file(name => "named $_.bin", size => 6000 + $_) } 1 .. 3;
my @on = sync(@nf);
is(scalar(grep { whole($on[$_], $nf[$_]) } 0 .. $#nf), 3,
   'with a resolver in the http block, files arrive from and to named origins');
$by = clients($tn);
is_deeply([sort keys %{ $by->{$_} }], ['the worker'], "every $_ request went by the worker's client")
    for grep { exists $by->{$_} } 'files.get', 'files.media', 's3 head', 's3 put';
ok($by->{'files.media'}{'the worker'}, 'downloads among them');
# the answers expire (valid=1s) and the kept connections close: new ones
# resolve the names again, waiting nginx's default resolver_timeout (the
# http block sets none)
sleep 2;
emulator(POST => '/close-idle');
my ($or) = sync(my $fr = drive_file(name => 'named again.bin', size => 3000));
ok(whole($or, $fr) && ($or->{result}{attempts} // 0) == 1,
   'names resolved again for new connections: the file arrives at its first attempt')
    or diag explain $or;
is_deeply([$tn->alerts], [], 'nginx logs no alert');
$tn->stop;

# a name the resolver does not know: the job fails as a connection would
my $tx = GDrive::Test->new(workers => 1, http => conf($names =~ s/s3\.h1\.test/nowhere.h1.test/r));
$tx->run;
my ($ox) = sync(drive_file(name => 'nowhere.bin', size => 1000));
ok($ox->{dead}, 'an S3 endpoint whose name does not resolve: the trigger ends in the DLQ') or diag explain $ox;
like($ox->{dead}{headers}{'gdrive.error.message'} // '', qr/not found/i, 'saying the host was not found');
is_deeply([$tx->alerts], [], 'nginx logs no alert');
$tx->stop;

# --- https, verified as curl verifies ----------------------------------------

SKIP: {
    skip 'openssl is not installed', 10 unless `openssl version 2>/dev/null`;
    my $dir = tempdir(CLEANUP => 1);
    for my $ca (qw(ca other)) {
        system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/$ca.key -subj '/CN=test $ca CA'"
               . " -days 2 -out $dir/$ca.pem 2>/dev/null") == 0 or BAIL_OUT('openssl CA');
    }
    open my $fh, '>', "$dir/server.ext" or die $!;
    print $fh "subjectAltName=DNS:drive.h1.test,DNS:s3.h1.test,IP:127.0.0.1\n";
    close $fh;
    system("openssl req -newkey rsa:2048 -nodes -keyout $dir/server.key -subj '/CN=h1 test'"
           . " -out $dir/server.csr 2>/dev/null && openssl x509 -req -in $dir/server.csr -CA $dir/ca.pem"
           . " -CAkey $dir/ca.key -CAcreateserial -days 2 -extfile $dir/server.ext -out $dir/server.pem 2>/dev/null") == 0
        or BAIL_OUT('openssl server certificate');

    my @fronts;
    my $front = sub {
        my ($target, @o) = @_;
        my $pid = open2(my $out, my $in, 'node', repo_root() . '/t/stack/tls-control-plane.js',
                        '--target', $target, '--cert', "$dir/server.pem", '--key', "$dir/server.key",
                        '--ca', "$dir/ca.pem", '--any-client', @o);
        push @fronts, $pid;
        my ($port) = (<$out> // '') =~ m{https://127\.0\.0\.1:(\d+)} or BAIL_OUT('the TLS front did not start');
        return $port;
    };
    my $gtls = $front->($ENV{GOOGLE_API_URL});
    my $stls = $front->($ENV{S3_ENDPOINT}, '--keep-host');
    my $tls = sub {
        my ($drive, $ca) = @_;
        return <<"EOF";
    resolver 127.0.0.1:$dns valid=1s ipv6=off;
    gdrive_google_api_url https://$drive:$gtls;
    gdrive_s3_endpoint https://127.0.0.1:$stls;
    gdrive_ca_file $dir/$ca.pem;
EOF
    };

    my $ts = GDrive::Test->new(workers => 1, http => conf($tls->('drive.h1.test', 'ca')));
    $ts->run;
    # the last one larger than what the socket and TLS buffer take at once
    my @tf = map { drive_file(name => "tls $_.bin", size => $_ == 3 ? 3_000_000 : 70_000 + $_) } 1 .. 3;
    my @ot = sync(@tf);
    is(scalar(grep { whole($ot[$_], $tf[$_]) } 0 .. $#tf), 3,
       'over https (a name for Drive, an address for S3), files arrive whole');
    $by = clients($ts);
    is_deeply([sort keys %{ $by->{$_} }], ['the worker'], "every $_ request went by the worker's client")
        for grep { exists $by->{$_} } 'files.get', 'files.media', 's3 head', 's3 put';
    ok($by->{'files.media'}{'the worker'} && $by->{'s3 put'}{'the worker'}, 'downloads and uploads among them');
    # the fronts (node's https servers) close connections idle for 5 s:
    # kept TLS connections the server closed cost no attempt
    sleep 6;
    my ($oi) = sync(my $fi = drive_file(name => 'tls after idle.bin', size => 20_000));
    ok(whole($oi, $fi) && ($oi->{result}{attempts} // 0) == 1,
       'after the servers closed the kept TLS connections, a file arrives at its first attempt')
        or diag explain $oi;
    is_deeply([$ts->alerts], [], 'nginx logs no alert');
    $ts->stop;

    # a certificate that another CA signed; one that names another host
    my $tv = GDrive::Test->new(workers => 1, http => conf($tls->('drive.h1.test', 'other')));
    $tv->run;
    my ($ov) = sync(drive_file(name => 'untrusted.bin', size => 1000));
    like($ov->{dead}{headers}{'gdrive.error.message'} // '', qr/certificate/i,
         'a certificate no trusted CA signed: refused, the DLQ record says why') or diag explain $ov;
    $tv->stop;
    my $tw = GDrive::Test->new(workers => 1, http => conf($tls->('other.h1.test', 'ca')));
    $tw->run;
    my ($ow) = sync(drive_file(name => 'wrong name.bin', size => 1000));
    like($ow->{dead}{headers}{'gdrive.error.message'} // '', qr/does not name the host/,
         'a certificate for other names: refused') or diag explain $ow;
    is_deeply([$tw->alerts], [], 'nginx logs no alert');
    $tw->stop;
    kill 'TERM', @fronts;
}

# --- everything by curl -----------------------------------------------------

my $tc = GDrive::Test->new(workers => 1, http => conf('gdrive_http_client curl;'));
$tc->run;
my @cf = map { drive_file(name => "curl $_.bin", size => 4000 + $_) } 1 .. 3;
my @oc = sync(@cf);
is(scalar(grep { whole($oc[$_], $cf[$_]) } 0 .. $#cf), 3, 'with gdrive_http_client curl, the files arrive whole');
$by = clients($tc);
is_deeply([sort keys %{ $by->{$_} }], ['curl'], "and every $_ request went by curl")
    for grep { exists $by->{$_} } 'files.get', 'files.media', 's3 head', 's3 put';
ok($by->{'files.media'}{curl}, 'downloads among them');
$tc->stop;

# --- nginx -t ---------------------------------------------------------------

my ($rc, $out) = GDrive::Test->new(http => conf('gdrive_http_client fast;'))->test_conf;
isnt($rc, 0, 'nginx -t refuses gdrive_http_client fast');
like($out, qr/gdrive_http_client.*must be "auto" or "curl"/, 'naming the directive and its values');

done_testing;
