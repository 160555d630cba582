#!/usr/bin/perl

# A listing's memory is one page, whatever the folder's size: a folder of
# 20,000 files, listed 1,000 at a time with every child's metadata, grows
# the worker by a few pages' worth while its pages come and go (each
# page's body once stayed in the job's pool until the job ended).  The
# children are left waiting in Kafka, unsynced.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines unique_name emulator
                    consumer_conf proc_memory);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};
# under sanitizers the run is checked, not its memory
my $sanitized = $ENV{GDRIVE_NGINX_PRELOAD};

my $topic = unique_name('bigfolder');
my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_list_page_size 1000;
    gdrive_rate_limit 1000r/s;
    # the children wait in Kafka: the listing is measured, not their syncs
    gdrive_max_inflight 1;
    gdrive_kafka_max_poll_records 1;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF
$t->run;

my $int = unique_name('int');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $folder = drive_file(name => 'huge', mimeType => 'application/vnd.google-apps.folder');
my $r = emulator(POST => "/folders/$folder->{id}/populate",
                 { count => 20000, size => 1, prefix => 'a-rather-long-file-name-for-a-realistic-page-' });
is($r->{count}, 20000, 'a folder of 20,000 files');

# warm the worker (a token, connections) with a job that lists nothing
kafka_produce_lines($topic, [$int, qq({"trigger_id":"warm-$int","integration_id":"$int","action":"sync_changes"})]);
is(job_outcome($topic, "warm-$int", 60)->{result}{status}, 'changes_listed', 'the worker is warm');

my ($pid) = $t->worker_pids;
my $base = proc_memory($pid);
my $peak = $base;
kafka_produce_lines($topic, [$int, qq({"trigger_id":"big-$int","integration_id":"$int","action":"sync_folder","folder_id":"$folder->{id}"})]);
# sampled by a process of its own: reading the result topic is slow
my $sampler = open(my $samples, '-|') // die "fork: $!";
if (!$sampler) {
    for (1 .. 6000) {
        my $m = proc_memory($pid) // last;
        print "$m\n";
        sleep 0.02;
    }
    exit 0;
}
my $o = job_outcome($topic, "big-$int", 180);
kill 'TERM', $sampler;
while (my $m = <$samples>) { chomp $m; $peak = $m if $m > $peak }
close $samples;
is($o->{result}{children}, 20000, 'the big folder is fanned out whole');
is($o->{result}{pages}, 20, 'over 20 pages');
my $grew = ($peak - $base) / 1024 / 1024;
diag sprintf 'worker RSS %.1f MiB, peak %.1f MiB during the listing (+%.1f MiB)',
     $base / 1048576, $peak / 1048576, $grew;
SKIP: {
    skip 'memory is not measured under sanitizers', 1 if $sanitized;
    cmp_ok($grew, '<', 15, 'the listing grew the worker by a few pages\' worth, not by 20 pages');
}
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
