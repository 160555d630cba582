#!/usr/bin/perl

# Google's quota, not CPU, bounds a sync: the Google requests a sync costs,
# counted in the emulator's request log. A folder of 1,000 new binary files
# costs the listing pages, one download per file and at most one token
# refresh, and no files.get (the listing's metadata travels to each child);
# the same folder synced again costs the listing pages alone. A Docs
# editors file found by a listing costs one export; one too large to
# export costs the refused export and at most two requests more (its
# export link and the content it redirects to). What S3 costs, from the
# module's own metrics: a HEAD per new file, and none for the unchanged
# ones, whose objects this zone's record says it stored.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use GDrive::Test qw(kafka_produce_lines kafka_json_by_id unique_name wait_until
                    emulator drive_file json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $FILES = 1000;
my $JSON = json();
my $topic = unique_name('req');
my $int = unique_name('int-req');
my $n = 0;

emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 16m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 64;
    gdrive_rate_limit 100000r/s burst=1000;
    gdrive_global_rate_limit 100000r/s burst=1000;
    gdrive_list_page_size 1000;
    gdrive_s3_prefix $topic/;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { gdrive_metrics; }
    }
EOF
$t->run;

sub trigger {
    my (%f) = @_;
    my $id = $f{trigger_id} = sprintf '%s-%03d', $topic, ++$n;
    $f{integration_id} = $int;
    kafka_produce_lines($topic, [$int, $JSON->encode(\%f)]);
    return $id;
}

# the trigger, then its result and its children's (the results that were
# not there before it), counted by status
sub synced {
    my ($children, %f) = @_;
    my %before = map { $_ => 1 } keys %{ kafka_json_by_id("$topic.result") };
    my $parent = trigger(%f);
    my %st;
    my $done = wait_until("$children children of $parent", 300, sub {
        my $all = kafka_json_by_id("$topic.result");
        return 0 unless $all->{$parent};
        %st = ();
        for my $id (grep { !$before{$_} && $_ ne $parent } keys %$all) {
            $st{$all->{$id}{status}}++;
            # what the results say the children cost Google
            $st{google_requests} += $all->{$id}{google_requests} // 1e9;
        }
        my $got = 0;
        $got += $st{$_} for grep { $_ ne 'google_requests' } keys %st;
        return $got >= $children;
    });
    return (kafka_json_by_id("$topic.result")->{$parent}, $done ? \%st : {});
}

sub requests_since {
    my ($since) = @_;
    my $r = emulator(GET => "/requests?integration=$int&since=$since");
    my %c;
    # the control plane is not Google: its answers are cached apart
    $c{$_->{endpoint}}++ for grep { $_->{endpoint} !~ /^cp\./ } @{ $r->{requests} // [] };
    return \%c;
}

sub s3_heads {
    my $m = $t->http(GET => '/metrics')->{content} // '';
    my $h = 0;
    $h += $1 while $m =~ /^gdrive_s3_requests_total\{op="head"[^}]*\} (\d+)$/mg;
    return $h;
}

ok(wait_until('warm-up', 60, sub {
    my $id = trigger(action => 'sync_changes');
    wait_until("result of $id", 10, sub { kafka_json_by_id("$topic.result")->{$id} }, 1);
}), 'the worker is up');

# ---------------------------------------------------- 1,000 new binary files

my $folder = drive_file(name => "requests $topic", mimeType => 'application/vnd.google-apps.folder');
emulator(POST => "/folders/$folder->{id}/populate",
         { count => $FILES, size => 64, prefix => "$topic-" });

emulator(POST => '/access_tokens/expire');
my $since = int(time * 1000);
my $heads = s3_heads();
my ($parent, $st) = synced($FILES, action => 'sync_folder', folder_id => $folder->{id});
is($parent->{status}, 'fanned_out', 'the folder fanned out');
is($st->{uploaded}, $FILES, "$FILES children uploaded") or diag explain $st;

my $c = requests_since($since);
diag 'new folder: ', join ', ', map { "$_ $c->{$_}" } sort keys %$c;
is($c->{'files.get'} // 0, 0, 'no files.get: the children had the listing\'s metadata');
is($c->{'files.media'}, $FILES, 'one download per file');
my $pages = $c->{'files.list'} // 0;
ok($pages >= 1 && $pages <= 2, "the listing pages ($pages)");
ok(($c->{token} // 0) <= 1, 'at most one token refresh');
my $total = 0;
$total += $_ for values %$c;
is($total, $FILES + $pages + ($c->{token} // 0), 'and nothing else');
is($parent->{google_requests} + $st->{google_requests}, $total,
   'the results\' google_requests add up to what Google saw');
is(s3_heads() - $heads, $FILES, 'S3: one HEAD per new file');

# ------------------------------------------------- the same folder, unchanged

$since = int(time * 1000);
$heads = s3_heads();
($parent, $st) = synced($FILES, action => 'sync_folder', folder_id => $folder->{id});
is($st->{unchanged}, $FILES, "$FILES children unchanged");
$c = requests_since($since);
diag 'unchanged folder: ', join ', ', map { "$_ $c->{$_}" } sort keys %$c;
is_deeply([sort keys %$c], ['files.list'], 'only the listing');
is($st->{google_requests}, 0, 'the unchanged children say they cost nothing');
is($parent->{google_requests}, $c->{'files.list'}, 'the parent says it cost the listing');
ok($c->{'files.list'} <= 2, "in $c->{'files.list'} page(s)");
is(s3_heads() - $heads, 0,
   'S3: no HEAD for the unchanged files, which this zone stored');

# ---------------------------------------------------------- Workspace files

my $docs = drive_file(name => "docs $topic", mimeType => 'application/vnd.google-apps.folder');
drive_file(name => 'small doc', mimeType => 'application/vnd.google-apps.document',
           parents => [$docs->{id}], exportSize => 2000);
$since = int(time * 1000);
($parent, $st) = synced(1, action => 'sync_folder', folder_id => $docs->{id});
is($st->{uploaded}, 1, 'a listed Doc is exported');
$c = requests_since($since);
is($c->{'files.export'}, 1, 'in one export request');
is(($c->{'files.get'} // 0), 0, 'without files.get');

my $big = drive_file(name => 'big doc', mimeType => 'application/vnd.google-apps.document',
                     exportSize => 20000);
emulator(POST => '/config', { export_limit => 10000 });
$since = int(time * 1000);
my $id = trigger(action => 'sync_file', file_id => $big->{id});
ok(wait_until("result of $id", 60, sub { kafka_json_by_id("$topic.result")->{$id} }),
   'a Doc too large to export is stored');
is(kafka_json_by_id("$topic.result")->{$id}{status}, 'uploaded', 'through its export link');
$c = requests_since($since);
diag 'export-link fallback: ', join ', ', map { "$_ $c->{$_}" } sort keys %$c;
ok(($c->{'files.exportLink'} // 0) + ($c->{'files.exportContent'} // 0) <= 2,
   'the fallback costs at most two requests');
emulator(POST => '/config', { export_limit => 10485760 });

is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
