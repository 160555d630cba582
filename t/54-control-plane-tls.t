#!/usr/bin/perl

# A control plane behind mutual TLS: the worker presents
# gdrive_control_plane_certificate and its key, verifies the control
# plane with gdrive_ca_file, and a worker without the certificate cannot
# get credentials (transient: a deployment being fixed is waited for).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IPC::Open2;
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name wait_until emulator
                    stack_env json consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};
plan skip_all => 'openssl is not installed' unless `openssl version 2>/dev/null`;

my $JSON = json();
my $env = { %{ stack_env() }, %ENV };
my $run = unique_name('m');
my $dir = tempdir(CLEANUP => 1);

# a CA, the control plane's certificate (for 127.0.0.1) and the worker's
for my $name (qw(ca server client)) {
    system("openssl genrsa -out $dir/$name.key 2048 2>/dev/null") == 0 or BAIL_OUT('openssl genrsa');
}
system("openssl req -x509 -new -key $dir/ca.key -subj '/CN=test control plane CA' -days 2 -out $dir/ca.pem 2>/dev/null") == 0
    or BAIL_OUT('openssl CA');
for my $c (['server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1'], ['client', 'gdrive-worker', 'extendedKeyUsage=clientAuth']) {
    my ($name, $cn, $ext) = @$c;
    open my $fh, '>', "$dir/$name.ext" or die $!;
    print $fh "$ext\n";
    close $fh;
    system("openssl req -new -key $dir/$name.key -subj '/CN=$cn' -out $dir/$name.csr 2>/dev/null"
           . " && openssl x509 -req -in $dir/$name.csr -CA $dir/ca.pem -CAkey $dir/ca.key -CAcreateserial"
           . " -days 2 -extfile $dir/$name.ext -out $dir/$name.pem 2>/dev/null") == 0
        or BAIL_OUT("openssl $name certificate");
}

my $pid = open2(my $out, my $in, 'node', repo_root() . '/t/stack/tls-control-plane.js',
                '--target', $env->{GOOGLE_API_URL}, '--cert', "$dir/server.pem",
                '--key', "$dir/server.key", '--ca', "$dir/ca.pem");
END { kill 'TERM', $pid if $pid }
my ($cp) = (<$out> // '') =~ m{(https://\S+)} or BAIL_OUT('the TLS control plane did not start');

sub nginx_for {
    my ($topic, $client) = @_;
    my $cert = $client ? "    gdrive_control_plane_certificate $dir/client.pem;\n"
                         . "    gdrive_control_plane_certificate_key $dir/client.key;" : '';
    return GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=2 base=50ms max=100ms;
    gdrive_control_plane_url $cp/cp;
    gdrive_ca_file $dir/ca.pem;
$cert

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF
}

my $int = "int-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $topic = unique_name('mtls');
my $t = nginx_for($topic, 1);
$t->run;
my $id = "$run-1";
kafka_produce_lines($topic, [$int, qq({"trigger_id":"$id","integration_id":"$int","action":"sync_changes"})]);
my $o = job_outcome($topic, $id, 60);
is($o->{result}{status}, 'changes_listed', 'credentials come from a control plane behind mutual TLS')
    or diag explain $o;
my $seen = eval { $JSON->decode(scalar `curl -s --cacert $dir/ca.pem --cert $dir/client.pem --key $dir/client.key $cp/__tls/requests`) } // [];
is($seen->[0]{client}, 'gdrive-worker', 'the worker presented its certificate');
$t->stop;

$topic = unique_name('notls');
$t = nginx_for($topic, 0);
$t->run;
$id = "$run-2";
kafka_produce_lines($topic, [$int, qq({"trigger_id":"$id","integration_id":"$int","action":"sync_changes"})]);
$o = job_outcome($topic, $id, 60);
is($o->{dead}{headers}{'gdrive.error.code'}, 'upstream_error',
   'without the certificate the TLS handshake fails: transient, retried, then dead-lettered');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 2, 'after its attempts');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
