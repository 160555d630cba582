#!/usr/bin/perl

# make soak: the worker under sustained load, with faults, for
# SOAK_SECONDS (600).  Two worker processes consume the trigger topic and
# serve gdrive_trigger.  Every half second the soak POSTs a batch and a few
# single triggers and produces a batch straight into Kafka: sync_file of
# files from 1 KiB to 12 MiB (in parts of 5 MiB), sync_folder of a folder of 40, and files that
# do not exist.  Some files get new content now and then, so uploads go on
# all along.
#
# The first half (after a warm-up) injects faults: Drive 429/5xx, resets and
# truncated downloads, token endpoint errors, expired access tokens, a
# worker killed with SIGKILL, a reload, and Kafka stopped for 15 s.  The
# second half is steady, and its memory is the one checked for growth.
#
# At the end it checks that nothing was lost: every trigger that got 202 or
# was produced ends as a result (a DLQ record, not_found, for the missing
# files) and nothing else; no worker's resident memory went past its bound
# or grew during the steady half; the error log has no alert but the
# killed worker's.  It prints what it saw.  Needs the stack (make stack).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use HTTP::Tiny;
use POSIX qw(floor);
use Time::HiRes qw(sleep time);
use GDrive::Test qw(kafka_produce_lines kafka_consume kafka_committed unique_name wait_until
                    emulator drive_file json consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $SECONDS = $ENV{SOAK_SECONDS} // 600;
my $WARMUP = $SECONDS < 120 ? 10 : 30;
my $FAULTS_UNTIL = $WARMUP + ($SECONDS - $WARMUP) / 2;
my $SEED = $ENV{SOAK_SEED} // int time;
srand $SEED;
my $JSON = json();
my $MiB = 1024 * 1024;

# part buffers per job, jobs per worker: what content may hold
my ($BUFFERS, $BUFFER_MIB, $INFLIGHT) = (3, 5, 16);

my $topic = unique_name('soak');
my $run = unique_name('k') =~ s/[^A-Za-z0-9_-]/_/gr;
my @ints = map { "int-$run-$_" } 1 .. 8;
my $stack = repo_root() . '/t/stack/stack.sh';

my $t = GDrive::Test->new(workers => 2, log_level => 'warn', http => <<"EOF");
    gdrive_zone gdrive 16m;
@{[ consumer_conf($topic) ]}
    gdrive_max_inflight $INFLIGHT;
    gdrive_kafka_commit_interval 1s;
    gdrive_kafka_session_timeout 10s;
    gdrive_kafka_delivery_timeout 10s;
    gdrive_retry attempts=8 base=100ms max=2s;
    gdrive_rate_limit 200r/s;
    gdrive_stream_buffers $BUFFERS ${BUFFER_MIB}m;
    gdrive_s3_multipart_threshold ${BUFFER_MIB}m;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
        location = /status { gdrive_status; }
    }
EOF

emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$_", integration_id => $_ })
    for @ints;

# the files: many small ones, some of a few MiB, and one folder
my @files;
for my $i (1 .. 120) {
    my $size = $i % 10 == 0 ? (6 + $i % 7) * $MiB + 123 : 1024 * (1 + $i % 37);
    push @files, drive_file(id => "f-$run-$i", name => "soak-$i.bin", size => $size)->{id};
}
my $folder = drive_file(name => 'soak folder',
                        mimeType => 'application/vnd.google-apps.folder')->{id};
emulator(POST => "/folders/$folder/populate",
         { count => 40, size => 2048, prefix => 'in-folder-' });

# the topic with its partitions before the members join
kafka_produce_lines($topic, [$ints[0], qq({"trigger_id":"warm-$run","integration_id":"$ints[0]","action":"sync_changes"})]);
$t->run;

my (%expect, %refused, %http_status);    # trigger id => 'result' | 'not_found'
my (%off_outage, %accepted);             # HTTP answers outside a Kafka outage; triggers by path
my $n = 0;

# Kafka is stopped for a while; HTTP may refuse from then until it is back
# and the producer has found it again
my ($start, $kafka_down, $kafka_back, $kafka_up) = (time, 0, 0, 1);
sub in_outage { !$kafka_up || ($kafka_back && time - $start < $kafka_back + 30) }

sub trigger {
    my $int = $ints[rand @ints];
    my $id = sprintf '%s-%06d', $run, ++$n;
    my $r = rand;
    my ($body, $want);
    if ($r < 0.03) {
        $body = { action => 'sync_file', file_id => "missing-$run-$n" };
        $want = 'not_found';
    } elsif ($r < 0.035) {
        $body = { action => 'sync_folder', folder_id => $folder };
        $want = 'result';
    } else {
        $body = { action => 'sync_file', file_id => $files[rand @files] };
        $want = 'result';
    }
    return ($id, $want, $int,
            $JSON->encode({ trigger_id => $id, integration_id => $int, %$body }));
}

my $ua = HTTP::Tiny->new(timeout => 30, keep_alive => 1);

sub post {
    my ($body, @items) = @_;
    my $res = $ua->request(POST => $t->url('/triggers'), {
        headers => { 'content-type' => 'application/json' }, content => $body });
    $http_status{$res->{status}}++;
    $off_outage{$res->{status}}++ unless in_outage();
    if ($res->{status} == 202) {
        $expect{$_->[0]} = $_->[1] for @items;
        $accepted{http} += @items;
    } else {
        $refused{$_->[0]} = $res->{status} for @items;
    }
}

sub load_tick {
    my ($kafka_up) = @_;

    # Kafka down: a POST waits up to the delivery timeout for its 503
    unless ($kafka_up) {
        my @one = ([trigger()]);
        post($one[0][3], @one);
        return;
    }

    my @batch = map { [trigger()] } 1 .. 20;
    post('[' . join(',', map { $_->[3] } @batch) . ']', @batch);
    for (1 .. 5) {
        my @one = ([trigger()]);
        post($one[0][3], @one);
    }
    my @direct = map { [trigger()] } 1 .. 20;
    kafka_produce_lines($topic, map { [$_->[2], $_->[3]] } @direct);
    $expect{$_->[0]} = $_->[1] for @direct;
    $accepted{kafka} += @direct;
}

# resident memory of each worker process, sampled along the run
my @samples;    # [second, pid, rss MiB]

sub rss_mib {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return;
    while (my $line = <$fh>) { return $1 / 1024 if $line =~ /^VmRSS:\s+(\d+)/ }
    return;
}

my @faults = (
    { endpoint => 'files.media', status => 503, times => 5 },
    { endpoint => 'files.get', status => 429, retry_after => 1, reason => 'rateLimitExceeded', times => 3 },
    { endpoint => 'files.media', reset => JSON::PP::true, times => 2 },
    { endpoint => 'files.media', truncate_after_bytes => 1000, times => 2 },
    { endpoint => 'token', status => 500, times => 1 },
    { endpoint => 'files.get', status => 500, times => 3 },
    { endpoint => 'files.list', status => 503, times => 1 },
);

my ($killed, $reloaded, $patched) = (0, 0, 0);
my $last_sample = -10;
my $last_fault = 0;

diag(sprintf 'soak: %ds (warm-up %ds, faults until %ds), topic %s, SOAK_SEED=%s',
     $SECONDS, $WARMUP, $FAULTS_UNTIL, $topic, $SEED);

while ((my $now = time - $start) < $SECONDS) {
    my $tick = time;
    load_tick($kafka_up);

    if ($now - $last_sample >= 5) {
        $last_sample = $now;
        for my $pid ($t->worker_pids) {
            my $rss = rss_mib($pid);
            push @samples, [$now, $pid, $rss] if defined $rss;
        }
    }

    # new content for a few files every 10 s: uploads all along
    if (floor($now / 10) > $patched) {
        $patched = floor($now / 10);
        emulator(PATCH => "/files/$files[rand @files]", { content_seed => "s$patched-$_" })
            for 1 .. 3;
    }

    if ($now >= $WARMUP && $now < $FAULTS_UNTIL) {
        my $phase = ($now - $WARMUP) / ($FAULTS_UNTIL - $WARMUP);

        # one fault at a time: most syncs find their object unchanged and
        # never download, and faults piling up for the few downloads would
        # fail one job more times than it retries
        if ($now - $last_fault >= 3 && !@{ (emulator(GET => '/faults') // {})->{faults} // [] }) {
            $last_fault = $now;
            emulator(POST => '/faults', { %{ $faults[rand @faults] },
                                          integration => $ints[rand @ints] });
            emulator(POST => '/access_tokens/expire') if rand() < 0.1;
        }

        if (!$killed && $phase >= 0.2) {
            my ($w) = $t->worker_pids or BAIL_OUT('no worker process to kill');
            kill 'KILL', $w;
            $killed = $w;
            diag("soak: ${\ floor($now)}s: worker $w killed");
        }

        if (!$reloaded && $phase >= 0.4) {
            $t->reload;
            $reloaded = 1;
            diag("soak: ${\ floor($now)}s: reload");
        }

        if (!$kafka_down && $phase >= 0.6) {
            system('bash', $stack, 'stop', 'kafka') == 0 or BAIL_OUT('kafka did not stop');
            ($kafka_down, $kafka_up) = ($now, 0);
            diag("soak: ${\ floor($now)}s: kafka stopped");
        }
    }

    kafka_start() if !$kafka_up && $now - $kafka_down >= 15;

    my $left = 0.5 - (time - $tick);
    sleep $left if $left > 0;
}

# a run too short for the outage to end still ends it
kafka_start() unless $kafka_up;

my $load_end = time - $start;
emulator(DELETE => '/faults');
diag(sprintf 'soak: load stopped at %ds: %d triggers expected, %d refused, HTTP %s',
     $load_end, scalar keys %expect, scalar keys %refused,
     join(' ', map { "$_:$http_status{$_}" } sort keys %http_status));

sub kafka_start {
    system('bash', $stack, 'start', 'kafka') == 0 or BAIL_OUT('kafka did not start again');
    ($kafka_back, $kafka_up) = (time - $start, 1);
    diag("soak: ${\ floor($kafka_back)}s: kafka started again");
}

# however the soak ends, it leaves the stack's Kafka running
END { system('bash', $stack, 'start', 'kafka') if !$kafka_up && $kafka_down }

# --- nothing lost --------------------------------------------------------------

my (%results, %dead, $dup);

sub outcomes {
    for my $r (kafka_consume("$topic.result")) {
        my $j = eval { $JSON->decode($r->{payload}) } or next;
        my $id = $j->{trigger_id} // next;
        next unless exists $expect{$id};
        $dup++ if $results{$id}++;
    }
    for my $r (kafka_consume("$topic.dlq")) {
        my $j = eval { $JSON->decode($r->{payload}) } or next;
        my $id = $j->{trigger_id} // next;
        $dead{$id} = $r->{headers}{'gdrive.error.code'} // '(no code)' if exists $expect{$id};
    }
}

sub first5 {
    my @s = sort @_;
    return join ' ', @s > 5 ? (@s[0 .. 4], '...') : @s;
}

# drained: the group has committed every partition to its end (a
# message's offset is committed once it and all before it are terminal);
# reading the outcome topics is slow, so they are read after that
wait_until('the group commits to the end', 600, sub {
    my @p = values %{ kafka_committed("group-$topic", $topic) };
    @p && !grep { $_->{end} > 0 && ($_->{committed} // "-") ne $_->{end} } @p;
});
my $drain = time - $start - $load_end;

my @missing;
my $drained = wait_until('every trigger ends', 120, sub {
    ($dup, %results, %dead) = (0);
    outcomes();
    @missing = grep { !$results{$_} && !exists $dead{$_} } keys %expect;
    return !@missing;
});
ok($drained, 'every trigger that got 202 or was produced ends as a result or a DLQ record'
   . (@missing ? sprintf(' (%d without: %s)', scalar @missing, first5(@missing)) : ''));

my @wrong = grep {
    my $id = $_;
    ($results{$id} && exists $dead{$id})
    || ($expect{$id} eq 'result' ? !$results{$id} : ($dead{$id} // '') ne 'not_found')
} grep { $results{$_} || exists $dead{$_} } keys %expect;
ok(!@wrong, 'each as it should: files a result, missing files not_found in the DLQ'
   . (@wrong ? ': ' . first5(map { "$_ => " . ($dead{$_} // 'result') } @wrong) : ''));

my %codes;
$codes{$_}++ for values %dead;
my $results = keys %results;
diag(sprintf 'soak: %d results (%d delivered twice), DLQ %s, drained %.0fs after the load',
     $results, $dup // 0, join(' ', map { "$_:$codes{$_}" } sort keys %codes) || 'none', $drain);

cmp_ok($accepted{http} // 0, '>=', 100, 'HTTP triggers were accepted');
cmp_ok($accepted{kafka} // 0, '>=', 100, 'triggers were produced straight into Kafka');
ok(!grep({ $_ != 202 } keys %off_outage),
   'outside the Kafka outage every HTTP answer is 202: '
   . join(' ', map { "$_:$off_outage{$_}" } sort keys %off_outage));
ok(!grep({ $_ != 202 && $_ != 503 } keys %http_status),
   'the others are 503, during the outage: ' . join(' ', map { "$_:$http_status{$_}" } sort keys %http_status));

# --- memory ----------------------------------------------------------------------

my %by_pid;
push @{ $by_pid{$_->[1]} }, $_ for @samples;
my $bound = $BUFFERS * $BUFFER_MIB * $INFLIGHT + 96;
my ($peak) = sort { $b->[2] <=> $a->[2] } @samples;

# the steady half: workers that lived through it, from its first quarter
# (caches filled) to its end
my $steady = $FAULTS_UNTIL + ($SECONDS - $FAULTS_UNTIL) / 4;
$steady = $kafka_back + 30 if $kafka_back + 30 > $steady;
my @growth;
for my $pid (sort keys %by_pid) {
    my @s = grep { $_->[0] >= $steady } @{ $by_pid{$pid} };
    next unless @s >= 4;
    my $first = (sort { $a <=> $b } map { $_->[2] } @s[0 .. 1])[0];
    my $last = (sort { $a <=> $b } map { $_->[2] } @s[-2 .. -1])[0];
    push @growth, [$pid, $first, $last];
}

SKIP: {
    # a sanitizer's shadow memory and quarantine are not the worker's
    skip 'memory is not the worker\'s under sanitizers', 2 if $ENV{GDRIVE_NGINX_PRELOAD};

    ok($peak && $peak->[2] <= $bound,
       sprintf 'worker memory stays below %d MiB (peak %.1f MiB, worker %d at %ds)',
       $bound, $peak ? ($peak->[2], $peak->[1], $peak->[0]) : (0, 0, 0));

    skip 'the steady half is too short to read growth', 1 unless @growth;
    my @grew = grep { $_->[2] - $_->[1] > 16 } @growth;
    ok(!@grew, 'no worker grows during the steady half: '
       . join(', ', map { sprintf '%d %.1f -> %.1f MiB', @$_ } @growth));
}

# --- the log -----------------------------------------------------------------------

# the master's word on the killed worker: its exit, a lock it held
my @alerts = grep { !($killed && /\b$killed\b/) } $t->alerts;
ok(!@alerts, 'no alert in the error log but those about the killed worker'
   . (@alerts ? ": $alerts[0]" : ''));

my $st = $t->http_json(GET => '/status');
is($st->{status}, 200, 'the status page answers at the end');

done_testing();
