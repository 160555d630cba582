#!/usr/bin/perl

# A fleet: three nginx instances (two workers each, prefixes of their own)
# in one consumer group share a 12-partition trigger topic and one global
# Drive budget. 3,000 sync_file triggers over 30 integrations come in,
# half posted to the instances' trigger locations and half produced
# straight into Kafka. Mid-run one instance quits gracefully (its jobs
# drain and commit) and another is killed with SIGKILL, master and
# workers, and started again on the same prefix. Then:
#
# - every trigger ends as a result or a DLQ record;
# - the killed instance's work done again is at most what it had not
#   committed (its results past the last offset committed before the
#   kill), and there are no other duplicates: a live worker whose
#   partitions are revoked lets its running jobs end and commits them
#   before it lets the partitions go;
# - the emulator's request log shows the fleet's Drive requests, in any
#   window of W seconds (5 and 10), within RATE x W plus the hosts' bursts
#   (scope=fleet shares the burst too), and each integration's within its
#   own rate x W plus its burst and one more across a handover; both
#   allow for 2 s of the emulator's own stalls (it stamps a request when
#   it reads it).
#
# Rates are scaled so that the run takes about a minute: 210 Drive
# requests/s for the fleet (two per file: files.get, files.media), 10/s
# per integration (30 of them could send 300/s), so that the global limit
# binds while most integrations have work, and an integration's own limit
# when few are left. A bucket of burst n passes n + 1 requests at once
# (nginx's limit_req arithmetic): in W seconds at most rate x W + n + 1.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name wait_until
                    emulator json consumer_conf repo_root stack_env);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();

my $HOSTS = 3;
my $PARTITIONS = 12;
my $TRIGGERS = 3000;
my $INTEGRATIONS = 30;

my $RATE = 210;          # the fleet's Drive requests per second
my $BURST = 60;          # the fleet's global burst (a share to each host)
my $INT_RATE = 10;       # per integration
my $INT_BURST = 10;
my @WINDOWS = (5, 10);   # seconds
# the emulator stamps a request when it reads it: a stall of its event
# loop, or of the machine, delivers requests sent over a longer time at
# once; the bounds allow for this much of it
my $TRANSPORT = 2;       # seconds

# scope=fleet: each host's bucket is its share of RATE and BURST by the
# partitions its workers hold, each burst at least 1; a bucket of burst n
# passes n + 1 at once: the fleet sends at most RATE x W + BURST + 2 per
# host in W seconds (README, "Running a fleet")
my $GLOBAL = "${RATE}r/s burst=$BURST scope=fleet";
my $SLACK = $BURST + 2 * $HOSTS;
# an integration: its own bucket, and across a handover a fresh bucket at
# its next owner (the issue's one burst more)
my $INT_SLACK = 2 * ($INT_BURST + 1);

# what a worker may have taken from Kafka at once: running and waiting
my $INFLIGHT = 16;
my $POLL = 64;

my $topic = unique_name('fleet');
my $group = "group-$topic";
my $started = int(time * 1000);

# what happened when, for the diagnostics (never asserted on)
my @phases;
sub phase { push @phases, sprintf '%.1fs %s', time - $started / 1000, $_[0] }

# ------------------------------------------------------------ the stack

my $tool = repo_root() . '/t/stack/kafka-tool.sh';
my $out = `bash $tool topics --bootstrap-server $ENV{KAFKA_BOOTSTRAP_SERVERS} --create --topic $topic --partitions $PARTITIONS --replication-factor 1 2>&1`;
is($?, 0, "a trigger topic of $PARTITIONS partitions") or diag $out;
phase('topic made');

my @ints = map { sprintf '%s-i%02d', $topic, $_ } 0 .. $INTEGRATIONS - 1;
my %int = map { $_ => 1 } @ints;
for my $i (@ints) {
    emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i", integration_id => $i });
}

(my $fid = $topic) =~ s/[^A-Za-z0-9_-]/_/g;
my @triggers = map { {
    trigger_id => sprintf('%s-t%04d', $topic, $_),
    integration_id => $ints[$_ % $INTEGRATIONS],
    action => 'sync_file',
    file_id => sprintf('%s_f%04d', $fid, $_),
} } 0 .. $TRIGGERS - 1;
for (my $i = 0; $i < @triggers; $i += 500) {
    my @files = map { { id => $_->{file_id}, name => "$_->{file_id}.bin", size => 256 } }
                @triggers[$i .. $i + 499];
    my ($st) = emulator(POST => '/files', \@files);
    $st == 200 or die "the emulator did not take the files: $st\n";
}
my %trigger = map { $_->{trigger_id} => $_ } @triggers;
phase('emulator holds the files');

# ------------------------------------------------------------ the fleet

sub conf {
    my ($name) = @_;
    return <<"EOF";
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_session_timeout 6s;
    gdrive_kafka_commit_interval 1s;
    gdrive_max_inflight $INFLIGHT;
    gdrive_kafka_max_poll_records $POLL;
    gdrive_rate_limit ${INT_RATE}r/s burst=$INT_BURST;
    gdrive_global_rate_limit $GLOBAL;
    gdrive_instance $name;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
        location = /status { gdrive_status; }
    }
EOF
}

my %name;    # instance => its name
my @nginx = map {
    my $t = GDrive::Test->new(workers => 2, http => conf("host-$_"));
    $name{$t} = "host-$_";
    $t->run;
} qw(a b c);
my ($A, $B, $C) = @nginx;

# partition => ["name/pid", ...] from the status pages of running instances
sub owners {
    my %owner;
    for my $t (grep { $_->{running} } @nginx) {
        my $st = $t->http_json(GET => '/status')->{json} // next;
        for my $w (@{ $st->{workers} // [] }) {
            push @{ $owner{$_->{partition}} }, "$name{$t}/$w->{pid}"
                for @{ $w->{partitions} // [] };
        }
    }
    return \%owner;
}

# every partition has one owner, among $members worker processes
sub settled {
    my ($members) = @_;
    my $o = owners();
    my %m = map { $_->[0] => 1 } values %$o;
    return (keys %$o == $PARTITIONS && keys %m == $members
            && !grep { @$_ != 1 } values %$o) ? $o : undef;
}

ok(wait_until('the group is formed', 90, sub { settled(2 * $HOSTS) }),
   "six workers share the $PARTITIONS partitions")
    or diag explain owners();
phase('group formed');

# ------------------------------------------------------------ the triggers

# half through the trigger locations, in batches, round robin
my $half = $TRIGGERS / 2;
my $posted = 0;
for (my $i = 0, my $n = 0; $i < $half; $i += 250, $n++) {
    my @batch = @triggers[$i .. ($i + 249 < $half ? $i + 249 : $half - 1)];
    my $res = $nginx[$n % $HOSTS]->http(POST => '/triggers',
        headers => { 'content-type' => 'application/json' },
        body => $JSON->encode(\@batch));
    if ($res->{status} == 202) { $posted += @batch } else { diag "POST: $res->{status} $res->{content}" }
}
is($posted, $half, "$half triggers posted to the instances");
# the other half straight into Kafka, keyed by integration
kafka_produce_lines($topic, map { [$_->{integration_id}, $JSON->encode($_)] }
                            @triggers[$half .. $#triggers]);
phase('triggers in');

# ------------------------------------------------------------ the outcomes

# a topic's records to its end as [timestamp, value], one kcat call (the
# values are one-line JSON)
sub records {
    my ($t) = @_;
    open my $fh, '-|', 'kcat', '-C', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS}, '-t', $t,
        '-e', '-q', '-f', '%T %s\n' or die "kcat: $!";
    my @r = map { chomp; [split / /, $_, 2] } <$fh>;
    close $fh;
    return @r;
}

# trigger id => [worker pids of its results], read from the result topic
sub results {
    my %r;
    for (records("$topic.result")) {
        my ($id) = $_->[1] =~ /"trigger_id":\s*"([^"]+)"/ or next;
        my ($pid) = $_->[1] =~ m{"worker":\s*"[^"]*/(\d+)"};
        push @{ $r{$id} }, $pid // 0;
    }
    return \%r;
}

sub dead_letters {
    my %d;
    for (records("$topic.dlq")) {
        my ($id) = $_->[1] =~ /"trigger_id":\s*"([^"]+)"/ or next;
        $d{$id}++;
    }
    return \%d;
}

# progress, from the status pages (quick; the outcomes are read from
# Kafka): the results each worker process counted, the last seen of a
# process that is gone kept
my (%seen, @polls);
sub results_reach {
    my ($n, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        for my $t (grep { $_->{running} } @nginx) {
            my $st = $t->http_json(GET => '/status')->{json} // next;
            $seen{"$name{$t}/$_->{pid}"} = $_->{results} // 0 for @{ $st->{workers} // [] };
        }
        my $sum = 0;
        $sum += $_ for values %seen;
        push @polls, sprintf '%.1fs %d', time - $started / 1000, $sum;
        return 1 if $sum >= $n;
        sleep 0.5;
    }
    return;
}

# a graceful quit after a quarter of the work
ok(results_reach($TRIGGERS / 4, 120), 'a quarter of the triggers done');
phase('a quarter done; host-a quits');
my @a_pids = $A->worker_pids;
my $a_master = $A->master_pid;
$A->_nginx('-s', 'quit');    # nginx -s quit: drain, commit, leave
ok(wait_until('the quitting instance exits', 60, sub { !kill 0, $a_master }),
   'host-a quits gracefully');
phase('host-a exited');
$A->{running} = 0;
ok(wait_until('the group is settled again', 60, sub { settled(2 * ($HOSTS - 1)) }),
   'the remaining four workers took its partitions')
    or diag explain owners();
phase('group settled');

# SIGKILL after half of the work: master and workers, no drain
ok(results_reach($TRIGGERS / 2, 120), 'half of the triggers done');
phase('half done; host-b killed');
my @b_pids = $B->worker_pids;
my $b_master = $B->master_pid;
my $b_owned = owners();
my $killed_ms = int(time * 1000);
kill 'KILL', $b_master, @b_pids;

# a process that is no more, or a zombie
sub gone {
    open my $fh, '<', "/proc/$_[0]/stat" or return 1;
    return (<$fh> // '') =~ /^\d+ \(.*\) [ZX] /;
}

ok(wait_until('host-b is gone', 30, sub { !grep { !gone($_) } $b_master, @b_pids }),
   'host-b\'s master and workers are killed');
$B->{running} = 0;
$B->run;
isnt($B->master_pid, $b_master, 'host-b runs again on the same prefix');
phase('host-b restarted');

my ($res, $dlq);
my $done = wait_until('every trigger ends', 240, sub {
    ($res, $dlq) = (results(), dead_letters());
    my $open = grep { !$res->{$_} && !$dlq->{$_} } keys %trigger;
    sleep 0.9 if $open;
    !$open;
});
ok($done, "all $TRIGGERS triggers end as a result or a DLQ record")
    or diag 'missing (the first 20): ', join ' ',
            grep { defined } (grep { !$res->{$_} && !$dlq->{$_} } sort keys %trigger)[0 .. 19];
my $ended = grep { $res->{$_} || $dlq->{$_} } keys %trigger;
diag sprintf '%d results, %d dead letters, %d of %d ended', scalar(grep { $trigger{$_} } keys %$res),
    scalar(grep { $trigger{$_} } keys %$dlq), $ended, $TRIGGERS;
phase('all ended');
diag join "\n", 'phases:', @phases;
diag 'results seen: ', join ', ', @polls;

# ------------------------------------------------------------ duplicates

# the offsets committed for the group before the kill: the group's commits
# in __consumer_offsets (key: version, group, topic, partition; value:
# version, offset), the last one before the kill per partition. A commit
# host-b sent just before the kill and the broker wrote just after is
# missed: the bound below is then only looser.
sub committed_before {
    my ($ms) = @_;
    my %c;
    # the group's partition: Kafka's abs(Java hashCode of the group id)
    # modulo the topic's partitions
    my $n = () = `kcat -L -b $ENV{KAFKA_BOOTSTRAP_SERVERS} -t __consumer_offsets`
                 =~ /^\s+partition \d+/mg;
    my $h = 0;
    $h = ($h * 31 + ord) & 0xffffffff for split //, $group;
    $h = $h < 2**31 ? $h : $h == 2**31 ? 0 : 2**32 - $h;
    my %o = $n ? (partition => $h % $n) : ();
    for my $r (kafka_consume('__consumer_offsets', %o)) {
        my $k = $r->{key} // next;
        next if length $k < 4;
        my ($kv, $glen) = unpack 'n n', $k;
        next if $kv > 1 || length $k < 4 + $glen + 2;
        next unless substr($k, 4, $glen) eq $group;
        my $tlen = unpack 'n', substr $k, 4 + $glen, 2;
        next unless substr($k, 6 + $glen, $tlen) eq $topic;
        my $p = unpack 'N', substr $k, 6 + $glen + $tlen, 4;
        next if length $r->{payload} < 10 || $r->{timestamp} > $ms;
        my ($hi, $lo) = unpack 'N N', substr $r->{payload}, 2, 8;
        $c{$p} = $hi * 2**32 + $lo;
    }
    return \%c;
}

my $committed = committed_before($killed_ms);
ok(scalar keys %$committed, 'the group\'s commits before the kill are found')
    or diag "no commits of $group in __consumer_offsets";
my %b_pid = map { $_ => 1 } @b_pids;
my %a_pid = map { $_ => 1 } @a_pids;
sub pid_of { ($_[0]{worker} // '') =~ m{/(\d+)$} ? $1 : 0 }

# trigger id => its results in the order Kafka has them, each with the
# time it was written; and per partition, offset => when it first ended
my (%full, %first);
# (the fields read with patterns: JSON::PP takes seconds over thousands)
for (records("$topic.result")) {
    my ($id) = $_->[1] =~ /"trigger_id":\s*"([^"]+)"/;
    my ($worker) = $_->[1] =~ /"worker":\s*"([^"]*)"/;
    my ($source) = $_->[1] =~ /"source":\s*(\{[^{}]*\})/;
    next unless $id && $trigger{$id} && $source;
    my ($p) = $source =~ /"partition":\s*(\d+)/;
    my ($o) = $source =~ /"offset":\s*(\d+)/;
    my $j = { trigger_id => $id, worker => $worker, _ts => $_->[0],
              source => { partition => $p // -1, offset => $o // -1 } };
    push @{ $full{$j->{trigger_id}} }, $j;
}
for my $id (keys %full) {
    my $j = (sort { $a->{_ts} <=> $b->{_ts} } @{ $full{$id} })[0];
    $first{$j->{source}{partition}}{$j->{source}{offset}} = $j->{_ts};
}

# what host-b had uncommitted when it was killed: its results past the
# last commit of their partition
my %uncommitted;
for my $id (keys %full) {
    for my $j (@{ $full{$id} }) {
        next unless $b_pid{pid_of($j)};
        my $p = $j->{source}{partition};
        $uncommitted{$id} = 1 if $j->{source}{offset} >= ($committed->{$p} // 0);
    }
}

# a result written while an earlier offset of its partition had not ended
# cannot be committed (offsets are committed up to the first that has not
# ended): when the partition moves on, the next owner does it again
sub behind_a_hole {
    my ($id) = @_;
    my $j = (sort { $a->{_ts} <=> $b->{_ts} } @{ $full{$id} })[0];
    my $f = $first{$j->{source}{partition}};
    return grep { $_ < $j->{source}{offset} && $f->{$_} >= $j->{_ts} } keys %$f;
}

# (before the revoke drained, a job whose result was on its way when its
# partition was revoked was cancelled, its result still arrived: done
# again too; the diagnostics tell the two kinds apart)
my @dups = sort grep { @{ $full{$_} } > 1 } keys %full;
my @killed = grep { $uncommitted{$_} } @dups;
my @others = grep { !$uncommitted{$_} } @dups;
my @behind = grep { behind_a_hole($_) } @others;
# the revocations the workers logged (a worker that leaves revokes too)
my $revoked = 0;
for my $t (@nginx) {
    $revoked += () = $t->error_log =~ /kafka rebalance: revoked [1-9]\d* partitions/g;
}
diag sprintf 'duplicates: %d; %d of host-b\'s uncommitted work at the kill (%d results); '
    . '%d of %d revocations: %d behind a job that had not ended, %d with their own '
    . 'result on its way',
    scalar @dups, scalar @killed, scalar keys %uncommitted, scalar @others, $revoked,
    scalar @behind, @others - @behind;

sub show {
    my (@ids) = @_;
    return { map { $_ => [map { "$_->{worker} p$_->{source}{partition} o$_->{source}{offset}" }
                          @{ $full{$_} }] } @ids[0 .. ($#ids < 9 ? $#ids : 9)] };
}
cmp_ok(scalar @killed, '<=', scalar keys %uncommitted,
       'host-b\'s redeliveries are at most what it had uncommitted');
# a live worker's revoke lets its running jobs end and commits them
# before the partitions move on (README, "Delivery guarantees")
is(scalar @others, 0, 'duplicates only from the killed instance\'s uncommitted work')
    or diag explain show(@others),
                    { committed_before_kill => $committed, b_workers => \@b_pids,
                      a_workers => \@a_pids, owners_at_kill => $b_owned };

# which instance did what
my %by;
for my $id (keys %full) {
    for my $j (@{ $full{$id} }) {
        my $pid = pid_of($j);
        my ($name) = ($j->{worker} // '?') =~ m{^([^/]*)};
        $by{$name . ($b_pid{$pid} ? ' (killed)' : $name eq 'host-b' ? ' (restarted)' : '')}++;
    }
}
diag 'results by instance: ', join ', ', map { "$_ $by{$_}" } sort keys %by;
is_deeply([grep { !/^host-[abc]\b/ } sort keys %by], [],
          'every result names its instance (gdrive_instance) in its worker')
    or diag explain \%by;

# ------------------------------------------------------------ the rates

# the request log, read with a pattern rather than decoded (thousands of
# entries): endpoint, ..., time_ms, integration, in the emulator's order
my $log = HTTP::Tiny->new(timeout => 60)->get(
    ($ENV{GOOGLE_EMULATOR_ADMIN_URL} // stack_env()->{GOOGLE_EMULATOR_ADMIN_URL})
    . "/requests?since=$started&prettyPrint=false");
my (@all, %per, %counts);
while ($log->{content} =~ /\{\s*"endpoint":\s*"([^"]*)"[^{}]*?"time_ms":\s*([\d.]+),\s*"integration":\s*(?:"([^"]*)"|null)/g) {
    my ($endpoint, $ms, $i) = ($1, $2, $3 // '');
    next unless $int{$i};
    $counts{$endpoint}++;
    next unless $endpoint =~ /^(files|changes)\./;    # Drive, not tokens
    push @all, $ms;
    push @{ $per{$i} }, $ms;
}
cmp_ok(scalar @all, '>=', 2 * $TRIGGERS, 'the emulator saw the Drive requests')
    or diag explain \%counts, $log->{status};

# the most requests in any window of $w ms: (count, its start)
sub worst_window {
    my ($w, @t) = @_;
    @t = sort { $a <=> $b } @t;
    my ($best, $at, $j) = (0, 0, 0);
    for my $i (0 .. $#t) {
        $j++ while $j < @t && $t[$j] < $t[$i] + $w;
        ($best, $at) = ($j - $i, $t[$i]) if $j - $i > $best;
    }
    return ($best, $at);
}

for my $w (@WINDOWS) {
    my $bound = int($RATE * ($w + $TRANSPORT) + $SLACK);
    my ($n, $at) = worst_window($w * 1000, @all);
    cmp_ok($n, '<=', $bound, "fleet: at most $bound Drive requests in any ${w}s")
        or diag sprintf 'the worst window starts %.3fs into the run', ($at - $started) / 1000;
    diag sprintf 'fleet, %ds windows: at most %d from %.1fs (%d r/s x %ds + bursts of %d hosts: %d)',
        $w, $n, ($at - $started) / 1000, $RATE, $w, $HOSTS, $RATE * $w + $SLACK;

    my $ibound = int($INT_RATE * ($w + $TRANSPORT) + $INT_SLACK);
    my ($worst, $wn, $wat) = ('', 0, 0);
    for my $i (sort keys %per) {
        my ($c, $t) = worst_window($w * 1000, @{ $per{$i} });
        ($worst, $wn, $wat) = ($i, $c, $t) if $c > $wn;
    }
    cmp_ok($wn, '<=', $ibound, "no integration over $ibound requests in any ${w}s")
        or diag sprintf '%s: %d from %.3fs into the run', $worst, $wn, ($wat - $started) / 1000;
    diag sprintf 'integrations, %ds windows: at most %d from %.1fs (%d r/s x %ds + two bursts: %d)',
        $w, $wn, ($wat - $started) / 1000, $INT_RATE, $w, $INT_RATE * $w + $INT_SLACK;
}

$_->stop for grep { $_->{running} } @nginx;
is_deeply([map { $_->alerts } $A, $C], [], 'no alerts');

done_testing;
