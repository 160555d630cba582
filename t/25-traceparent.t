#!/usr/bin/perl

# W3C trace context through the pipeline: the caller's traceparent (or
# one the trigger location starts) is a header of the trigger record;
# the job is a span of that trace, and its results, children and dead
# letters carry the trace id with the job's span as parent; a replayed
# dead letter keeps it; the job's log lines name the trace.  A bad
# traceparent, over HTTP or on a record, is never carried on: a trace is
# started instead.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(job_outcome drive_file kafka_consume kafka_produce
                    kafka_produce_lines unique_name wait_until emulator
                    json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $run = unique_name('tp');
my $topic = unique_name('trace');
my $int = "int-$run";
my $n = 0;

emulator(POST => '/refresh_tokens',
         { refresh_token => "1//rt-$int", integration_id => $int });

my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=2 base=50ms max=100ms;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
        location = /dlq { gdrive_dlq; }
    }
EOF

# the topics exist before the consumer joins
kafka_produce_lines($topic, [$int, $JSON->encode({
    trigger_id => "$run-warm", integration_id => $int,
    action => 'sync_changes' })]);
$t->run;

my $TP = qr/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

sub id { sprintf '%s-%03d', $run, ++$n }

sub post {
    my ($trigger, %h) = @_;
    return $t->http_json(POST => '/triggers', body => $JSON->encode($trigger),
                         headers => { 'content-type' => 'application/json',
                                      %h });
}

# the headers of one record as kcat prints them, all of them, in order
sub raw_headers {
    my ($tp, $p, $o) = @_;
    my $out = `kcat -C -b $ENV{KAFKA_BOOTSTRAP_SERVERS} -t $tp -p $p -o $o -c 1 -e -q -f '%h'`;
    return $out // '';
}

sub record_at {
    my ($p, $o) = @_;
    my ($rec) = kafka_consume($topic, partition => $p, offset => $o,
                              count => 1);
    return $rec // {};
}

sub outcome { job_outcome($topic, @_) }

sub valid_tp {
    my ($v) = @_;
    my @f = ($v // '') =~ $TP or return;
    return if $f[0] =~ /^0+$/ || $f[1] =~ /^0+$/;
    return @f;
}

ok(outcome("$run-warm")->{result}, 'the worker is up');

# --- a caller's traceparent, end to end ---------------------------------------

my $T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
my $P1 = '00f067aa0ba902b7';
my $f = drive_file(name => 'traced.bin', size => 3000);
my $id = id();
my $r = post({ trigger_id => $id, integration_id => $int,
               action => 'sync_file', file_id => $f->{id} },
             traceparent => "00-$T1-$P1-01", tracestate => 'congo=t61rcWkgMzE');
is($r->{status}, 202, 'a trigger with a traceparent is accepted');
is($r->{json}{trace_id}, $T1, 'the answer names the caller\'s trace');

my $rec = record_at($r->{json}{partition}, $r->{json}{offset});
is($rec->{headers}{traceparent}, "00-$T1-$P1-01",
   'the trigger record carries the traceparent');
is($rec->{headers}{tracestate}, 'congo=t61rcWkgMzE', 'and the tracestate');

my $o = outcome($id);
is($o->{result}{status}, 'uploaded', 'the traced trigger is synced');
is($o->{result}{trace_id}, $T1, 'its result names the trace');
my $h = $o->{result}{_record}{headers};
my ($rt, $rp) = valid_tp($h->{traceparent});
is($rt, $T1, 'the result record carries the trace');
ok($rp && $rp ne $P1, 'with the job\'s own span as parent');
is($h->{tracestate}, 'congo=t61rcWkgMzE', 'and the tracestate');

my @lines = grep { /trigger: \Q$id\E,/ } split /\n/, $t->error_log;
ok(@lines, 'the job logged lines');
is(scalar(grep { !/trace: $T1\b/ } @lines), 0, 'every one names the trace')
    or diag join "\n", @lines;

# --- a higher version is read by its first four fields ---------------------------

$r = post({ integration_id => $int, action => 'sync_changes' },
          traceparent => "cc-$T1-$P1-01-what-comes-next");
is($r->{json}{trace_id}, $T1, 'a later version\'s trace is kept');
is(record_at($r->{json}{partition}, $r->{json}{offset})->{headers}{traceparent},
   "00-$T1-$P1-01", 'and carried on as version 00');

# --- tracestate: several headers are one list, a long one is dropped -----------

$r = post({ integration_id => $int, action => 'sync_changes' },
          traceparent => "00-$T1-$P1-01", tracestate => ['a=1', 'b=2']);
like(raw_headers($topic, $r->{json}{partition}, $r->{json}{offset}),
     qr/(?:^|,)tracestate=a=1,b=2(?:,|$)/, 'two tracestate headers are joined');
$r = post({ integration_id => $int, action => 'sync_changes' },
          traceparent => "00-$T1-$P1-01", tracestate => 'k=' . ('v' x 600));
my $hd = record_at($r->{json}{partition}, $r->{json}{offset})->{headers};
is($hd->{traceparent}, "00-$T1-$P1-01", 'a tracestate over 512 bytes');
ok(!defined $hd->{tracestate}, 'is not carried on, the trace is');

# --- a listing's children ------------------------------------------------------

my $T2 = 'a3ce929d0e0e47364bf92f3577b34da6';
my $folder = drive_file(name => 'traced folder',
                        mimeType => 'application/vnd.google-apps.folder');
emulator(POST => "/folders/$folder->{id}/populate",
         { count => 3, size => 10, prefix => "tp-$run-" });
$id = id();
$r = post({ trigger_id => $id, integration_id => $int,
            action => 'sync_folder', folder_id => $folder->{id} },
          traceparent => "00-$T2-$P1-00");
$o = outcome($id);
is($o->{result}{children}, 3, 'a traced folder fans out');
is($o->{result}{trace_id}, $T2, 'in the trace');
my (undef, $span) = valid_tp($o->{result}{_record}{headers}{traceparent});
ok($span, 'the folder\'s result has the job\'s span');

my @children = grep {
    my $j = eval { $JSON->decode($_->{payload}) } // {};
    ($j->{parent_trigger_id} // '') eq $id
} kafka_consume($topic);
is(scalar @children, 3, 'three children');
is(scalar(grep { ($_->{headers}{traceparent} // '') eq "00-$T2-$span-00" }
          @children),
   3, 'each in the trace, the folder job\'s span its parent, flags kept');

my %spans;
for my $c (@children) {
    my $cid = $JSON->decode($c->{payload})->{trigger_id};
    my $co = outcome($cid);
    is($co->{result}{trace_id}, $T2, "child $cid: its result is in the trace");
    my ($ct, $cp) = valid_tp($co->{result}{_record}{headers}{traceparent});
    ok($cp && $cp ne $span, "child $cid: with a span of its own");
    $spans{$cp // ''}++;
}
is(scalar keys %spans, 3, 'three children, three spans');

# --- a failing job's dead letter, and its replay ---------------------------------

my $T3 = '0af7651916cd43dd8448eb211c80319c';
$id = id();
$r = post({ trigger_id => $id, integration_id => $int,
            action => 'sync_file', file_id => "missing$run" =~ s/\W/_/gr },
          traceparent => "00-$T3-b7ad6b7169203331-01");
$o = outcome($id);
ok($o->{dead}, 'a trigger for a missing file is dead-lettered');
my ($dt, $dp) = valid_tp($o->{dead}{headers}{traceparent});
is($dt, $T3, 'the dead letter carries the trace');
ok($dp && $dp ne 'b7ad6b7169203331', 'with the job\'s span as parent');
my $raw = raw_headers("$topic.dlq", $o->{dead}{partition}, $o->{dead}{offset});
is(scalar(() = $raw =~ /(?:^|,)traceparent=/g), 1,
   'and one traceparent only, the job\'s in place of the trigger\'s');

$r = $t->http_json(POST => '/dlq', body => '{"count":10}',
                   headers => { 'content-type' => 'application/json' });
is($r->{status}, 200, 'the dead letter is replayed') or diag $r->{content};
my ($replayed) = wait_until('the replayed record', 30, sub {
    my @r = grep { defined $_->{headers}{'gdrive.replayed_from'} }
            kafka_consume($topic);
    return $r[0];
});
is($replayed && $replayed->{headers}{traceparent},
   $o->{dead}{headers}{traceparent},
   'the replayed trigger keeps the dead letter\'s traceparent');

# --- bad traceparents over HTTP: a trace is started -------------------------------

my %bad = (
    'uppercase'        => "00-\U$T1\E-$P1-01",
    'short'            => "00-$T1-$P1-1",
    'long'             => "00-$T1-$P1-01-",
    'not hex'          => "00-${\ substr($T1, 0, 31)}g-$P1-01",
    'version ff'       => "ff-$T1-$P1-01",
    'a zero trace id'  => '00-' . ('0' x 32) . "-$P1-01",
    'a zero parent id' => "00-$T1-" . ('0' x 16) . '-01',
    'empty'            => '',
    'two headers'      => ["00-$T1-$P1-01", "00-$T2-$P1-01"],
);

for my $what (sort keys %bad) {
    $r = post({ integration_id => $int, action => 'sync_changes' },
              traceparent => $bad{$what}, tracestate => 'congo=t61rcWkgMzE');
    is($r->{status}, 202, "$what: the trigger is accepted");
    my $tid = $r->{json}{trace_id} // '';
    like($tid, qr/^[0-9a-f]{32}$/, "$what: with a trace id");
    ok($tid ne $T1 && $tid ne $T2 && $tid !~ /^0+$/, "$what: a new one");
    $hd = record_at($r->{json}{partition}, $r->{json}{offset})->{headers};
    my ($ht, $hp) = valid_tp($hd->{traceparent});
    is($ht, $tid, "$what: the record carries a valid traceparent of it");
    ok(!defined $hd->{tracestate}, "$what: and no tracestate of the bad one");
}

$r = post([ map { { integration_id => $int, action => 'sync_changes' } } 1 .. 2 ]);
is($r->{status}, 202, 'a batch without a traceparent is accepted');
my @tids = map { $_->{trace_id} // '' } @{ $r->{json} // [] };
ok(@tids == 2 && $tids[0] ne $tids[1] && !grep({ !/^[0-9a-f]{32}$/ } @tids),
   'each trigger starts a trace of its own');
$o = outcome($r->{json}[0]{trigger_id});
is($o->{result}{trace_id}, $tids[0], 'which its result carries');

# --- records produced without the location ---------------------------------------

my %records = (
    'no header'     => undef,
    'a bad header'  => "00-$T1-$P1-0x",
);
for my $what (sort keys %records) {
    my $rid = id();
    kafka_produce($topic, [$int, $JSON->encode({
        trigger_id => $rid, integration_id => $int,
        action => 'sync_changes' }),
        defined $records{$what} ? { traceparent => $records{$what} } : {}]);
    $o = outcome($rid);
    my $tid = $o->{result}{trace_id} // '';
    like($tid, qr/^[0-9a-f]{32}$/, "$what: the result has a trace id");
    ok($tid ne $T1 && $tid !~ /^0+$/, "$what: a new one");
    my ($ht) = valid_tp($o->{result}{_record}{headers}{traceparent});
    is($ht, $tid, "$what: the result record carries it");
}

# two traceparent headers on a record: invalid, a trace is started
my $rid = id();
open my $kc, '|-', 'kcat', '-P', '-b', $ENV{KAFKA_BOOTSTRAP_SERVERS},
    '-t', $topic, '-k', $int, '-H', "traceparent=00-$T1-$P1-01",
    '-H', "traceparent=00-$T2-$P1-01" or die "kcat: $!";
print $kc $JSON->encode({ trigger_id => $rid, integration_id => $int,
                          action => 'sync_changes' });
close $kc;
$o = outcome($rid);
my $tid = $o->{result}{trace_id} // '';
ok($tid =~ /^[0-9a-f]{32}$/ && $tid ne $T1 && $tid ne $T2,
   'a record with two traceparents gets a new trace');

is(scalar($t->alerts), 0, 'no alerts') or diag join "\n", $t->alerts;

done_testing;
