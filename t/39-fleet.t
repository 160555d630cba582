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
# - a trigger has two results only when the killed instance's workers
#   wrote one before the kill past the last offset committed before it
#   (its uncommitted work, redelivered);
# - the emulator's request log shows the fleet's Drive requests, in any
#   window of W seconds, within RATE x W plus one burst per host, and
#   each integration's within its own RATE x W plus one burst.
#
# Rates are scaled so that the run takes about a minute: 210 Drive
# requests/s for the fleet (two per file: files.get, files.media), 10/s
# per integration (30 of them could send 300/s), so that the global limit
# binds while most integrations have work, and an integration's own limit
# when few are left.
#
# A bucket of burst n passes n + 1 requests at once (nginx's limit_req
# arithmetic), so in W seconds a bucket passes at most rate x W + n + 1.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GDrive::Test qw(kafka_produce_lines kafka_consume unique_name wait_until
                    emulator json consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();

my $HOSTS = 3;
my $PARTITIONS = 12;
my $TRIGGERS = 3000;
my $INTEGRATIONS = 30;

my $RATE = 210;          # the fleet's Drive requests per second
my $BURST = 20;          # each host's global burst
my $INT_RATE = 10;       # per integration
my $INT_BURST = 10;
my @WINDOWS = (5, 10);   # seconds
# the emulator stamps a request when it reads it: a stall of its event
# loop, or of the machine, delivers requests sent over a longer time at
# once; the bounds allow for this much of it
my $TRANSPORT = 1.5;     # seconds

# scope=host: each host's own bucket at RATE / HOSTS gives the same sum
# bound as scope=fleet's shares of RATE while all hosts run
my $SCOPE = 'host';
my $GLOBAL = $SCOPE eq 'fleet'
    ? "${RATE}r/s burst=$BURST scope=fleet"
    : sprintf('%dr/s burst=%d', $RATE / $HOSTS, $BURST);

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
    $st == 200 or BAIL_OUT("the emulator did not take the files: $st");
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
    gdrive_max_inflight 16;
    gdrive_rate_limit ${INT_RATE}r/s burst=$INT_BURST;
    gdrive_global_rate_limit $GLOBAL;
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

# trigger id => [worker pids of its results], read from the result topic
sub results {
    my %r;
    for (kafka_consume("$topic.result")) {
        my ($id) = $_->{payload} =~ /"trigger_id":\s*"([^"]+)"/ or next;
        my ($pid) = $_->{payload} =~ m{"worker":\s*"[^"]*/(\d+)"};
        push @{ $r{$id} }, $pid // 0;
    }
    return \%r;
}

sub dead_letters {
    my %d;
    for (kafka_consume("$topic.dlq")) {
        my ($id) = $_->{payload} =~ /"trigger_id":\s*"([^"]+)"/ or next;
        $d{$id}++;
    }
    return \%d;
}

# waits (polling once a second) until $n triggers have a result
sub results_reach {
    my ($n, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $r = results();
        return $r if keys %$r >= $n;
        sleep 1;
    }
    return;
}

# a graceful quit after a quarter of the work
ok(results_reach($TRIGGERS / 4, 120), 'a quarter of the triggers done');
phase('a quarter done; host-a quits');
my @a_pids = $A->worker_pids;
my $a_master = $A->master_pid;
$A->signal('QUIT');
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
sub gone { my $s = ''; open my $fh, '<', "/proc/$_[0]/stat" or return 1;
           $s = <$fh> // ''; return $s =~ /^\d+ \(.*\) [ZX] / }
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
    or diag 'missing: ', join ' ', (grep { !$res->{$_} && !$dlq->{$_} } sort keys %trigger)[0 .. 19];
my $ended = grep { $res->{$_} || $dlq->{$_} } keys %trigger;
diag sprintf '%d results, %d dead letters, %d of %d ended', scalar(grep { $trigger{$_} } keys %$res),
    scalar(grep { $trigger{$_} } keys %$dlq), $ended, $TRIGGERS;
phase('all ended');
diag join "\n", 'phases:', @phases;

# ------------------------------------------------------------ duplicates

# the offsets committed for the group before the kill: the group's commits
# in __consumer_offsets (key: version, group, topic, partition; value:
# version, offset), the last one before the kill per partition
sub committed_before {
    my ($ms) = @_;
    my %c;
    for my $r (kafka_consume('__consumer_offsets')) {
        my $k = $r->{key} // next;
        next if length $k < 4;
        my ($kv, $glen) = unpack 'n n', $k;
        next if $kv > 1 || length $k < 4 + $glen + 2;
        my $g = substr $k, 4, $glen;
        next unless $g eq $group;
        my $tlen = unpack 'n', substr $k, 4 + $glen, 2;
        my $t = substr $k, 6 + $glen, $tlen;
        next unless $t eq $topic;
        my $p = unpack 'N', substr $k, 6 + $glen + $tlen, 4;
        next if length $r->{payload} < 10 || $r->{timestamp} > $ms;
        my ($hi, $lo) = unpack 'N N', substr $r->{payload}, 2, 8;
        $c{$p} = $hi * 2**32 + $lo;
    }
    return \%c;
}

my $committed = committed_before($killed_ms);
my %b_pid = map { $_ => 1 } @b_pids;
my %full;    # trigger id => decoded results
for (kafka_consume("$topic.result")) {
    my $j = eval { $JSON->decode($_->{payload}) } or next;
    push @{ $full{$j->{trigger_id}} }, $j if $trigger{$j->{trigger_id} // ''};
}
# what host-b had uncommitted when it was killed: its results past the
# last commit of their partition
my %uncommitted;
for my $id (keys %full) {
    for my $j (@{ $full{$id} }) {
        my ($pid) = ($j->{worker} // '') =~ m{/(\d+)$};
        next unless $pid && $b_pid{$pid};
        my $p = $j->{source}{partition};
        $uncommitted{$id} = 1 if $j->{source}{offset} >= ($committed->{$p} // 0);
    }
}
my @dups = sort grep { @{ $full{$_} } > 1 } keys %full;
my @stray = grep { !$uncommitted{$_} } @dups;
diag sprintf 'duplicates: %d; host-b had %d results uncommitted at the kill',
    scalar @dups, scalar keys %uncommitted;
is(scalar @stray, 0, 'duplicates are only host-b\'s uncommitted results, redelivered')
    or diag explain { map { $_ => [map { "$_->{worker} p$_->{source}{partition}"
                                         . " o$_->{source}{offset}" } @{ $full{$_} }] }
                      @stray[0 .. ($#stray < 9 ? $#stray : 9)] },
                    { committed_before_kill => $committed, b_workers => \@b_pids,
                      a_workers => \@a_pids, owners_at_kill => $b_owned };
cmp_ok(scalar @dups, '<=', scalar keys %uncommitted,
       'no more duplicates than host-b could have had uncommitted');

# which instance did what
my %by;
for my $id (keys %full) {
    for my $j (@{ $full{$id} }) {
        my ($pid) = ($j->{worker} // '') =~ m{/(\d+)$};
        my $who = grep({ $_ == $pid } @a_pids) ? 'host-a'
                : $b_pid{$pid} ? 'host-b (killed)' : 'host-b (restarted) or host-c';
        $by{$who}++;
    }
}
diag 'results by instance: ', join ', ', map { "$_ $by{$_}" } sort keys %by;

# ------------------------------------------------------------ the rates

my $log = emulator(GET => "/requests?since=$started");
my (@all, %per);
for my $r (@{ $log->{requests} // [] }) {
    next unless $int{$r->{integration} // ''};
    next unless $r->{endpoint} =~ /^(files|changes)\./;    # Drive, not tokens
    push @all, $r->{time_ms};
    push @{ $per{$r->{integration}} }, $r->{time_ms};
}
cmp_ok(scalar @all, '>=', 2 * $TRIGGERS, 'the emulator saw the Drive requests')
    or diag explain $log->{counts};

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
    my $bound = int($RATE * ($w + $TRANSPORT) + $HOSTS * ($BURST + 1));
    my ($n, $at) = worst_window($w * 1000, @all);
    cmp_ok($n, '<=', $bound, "fleet: at most $bound Drive requests in any ${w}s")
        or diag sprintf 'the worst window starts %.3fs into the run', ($at - $started) / 1000;
    diag sprintf 'fleet, %ds windows: at most %d from %.1fs (%d r/s x %ds + %d bursts: %d)',
        $w, $n, ($at - $started) / 1000, $RATE, $w, $HOSTS, $RATE * $w + $HOSTS * ($BURST + 1);

    my $ibound = int($INT_RATE * ($w + $TRANSPORT) + $INT_BURST + 1);
    my ($worst, $wn, $wat) = ('', 0, 0);
    for my $i (sort keys %per) {
        my ($c, $t) = worst_window($w * 1000, @{ $per{$i} });
        ($worst, $wn, $wat) = ($i, $c, $t) if $c > $wn;
    }
    cmp_ok($wn, '<=', $ibound, "no integration over $ibound requests in any ${w}s")
        or diag sprintf '%s: %d from %.3fs into the run', $worst, $wn, ($wat - $started) / 1000;
    diag sprintf 'integrations, %ds windows: at most %d from %.1fs (%d r/s x %ds + a burst: %d)',
        $w, $wn, ($wat - $started) / 1000, $INT_RATE, $w, $INT_RATE * $w + $INT_BURST + 1;
}

$_->stop for grep { $_->{running} } @nginx;
is_deeply([map { $_->alerts } $A, $C], [], 'no alerts');

done_testing;
