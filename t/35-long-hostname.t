#!/usr/bin/perl

# A worker on a host with a 63-character name (the longest a DNS label,
# and so a Kubernetes pod name, can be): the DLQ record's worker header
# and the result's worker field carry "host/pid" whole, and nothing
# overflows (run it under make test-asan to see the stack stay intact).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name emulator consumer_conf
                    nginx_bin);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};
plan skip_all => 'unshare -u needs root'
    unless $> == 0 && system('unshare -u true 2>/dev/null') == 0;

my $host = 'pod-' . ('x' x 55) . '-abc';
is(length $host, 63, 'the host name has 63 characters');

# nginx in a UTS namespace of its own, under that name
my $dir = tempdir(CLEANUP => 1);
my $nginx = nginx_bin();
open my $fh, '>', "$dir/nginx" or die $!;
print $fh "#!/bin/sh\nexec unshare -u sh -c 'hostname \"\$0\" && exec $nginx \"\$@\"' $host \"\$@\"\n";
close $fh;
chmod 0755, "$dir/nginx";
local $ENV{TEST_NGINX_BINARY} = "$dir/nginx";

my $topic = unique_name('host');
my $t = GDrive::Test->new(workers => 1, http => <<"EOF2");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF2
$t->run;

my $int = unique_name('int');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });
kafka_produce_lines($topic, [$int, qq({"trigger_id":"bad-$int","integration_id":"$int","action":"sync_file"})],
                            [$int, qq({"trigger_id":"good-$int","integration_id":"$int","action":"sync_changes"})]);

my $o = job_outcome($topic, "bad-$int");
my ($pid) = $t->worker_pids;
is($o->{dead}{headers}{'gdrive.error.worker'}, "$host/$pid", 'the DLQ record names the worker whole');
$o = job_outcome($topic, "good-$int");
is($o->{result}{worker}, "$host/$pid", 'and so does a result');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
