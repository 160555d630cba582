#!/usr/bin/perl

# The Drive stage against the Google emulator, with the real broker and the
# real S3 server: binary downloads and Workspace exports (with the export
# link fallback), shortcuts, shared drives, the metadata cache, refused
# tokens, error classes (README, Failures and retries) and backoff on rate limits, folders
# fanned out page by page (a failing page fails the listing), the changes
# feed with edits and deletions.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines kafka_consume kafka_json_by_id
                    unique_name wait_until emulator emulator_content
                    s3_object json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('drive');
my $prefix = "$topic/";
my $run = unique_name('d');
my $int = "int-$run";

my $t = GDrive::Test->new(workers => 2, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_max_inflight 32;
    gdrive_retry attempts=4 base=50ms max=200ms;
    gdrive_rate_limit 500r/s;
    gdrive_quota_pause 2s;
    gdrive_list_page_size 100;
    gdrive_s3_prefix $prefix;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF

my @integrations = map { "$int-$_" } qw(a b c d e f);
for my $i ($int, @integrations) {
    emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i", integration_id => $i });
}

kafka_produce_lines($topic, ['w', qq({"trigger_id":"warm-$run","integration_id":"$int","action":"sync_changes"})]);
$t->run;

my $JSON = json();
my $n = 0;

sub trigger {
    my (%f) = @_;
    my $id = $f{trigger_id} //= sprintf '%s-%03d', $run, ++$n;
    $f{integration_id} //= $int;
    kafka_produce_lines($topic, [$f{integration_id}, $JSON->encode(\%f)]);
    return $id;
}

sub outcome { job_outcome($topic, @_) }

sub requests {
    my ($endpoint, $integration, $since) = @_;
    my $r = emulator(GET => "/requests?integration=$integration"
                            . ($endpoint eq '*' ? '' : "&endpoint=$endpoint")
                            . ($since ? "&since=$since" : ''));
    return @{ $r->{requests} // [] };
}

sub file { drive_file(@_) }

ok(wait_until('warm-up', 60, sub { kafka_json_by_id("$topic.result")->{"warm-$run"} }),
   'the workers are up');

# --- binary files ------------------------------------------------------------

my $bin = file(name => 'report.bin', size => 300_000, mimeType => 'application/octet-stream');
my $meta = emulator(GET => "/files/$bin->{id}?checksums=true");
my $o = outcome(trigger(action => 'sync_file', file_id => $bin->{id}));
my $r = $o->{result};
ok($r, 'a binary file is synced') or diag explain $o;
is($r->{status}, 'uploaded', 'its result says uploaded');
is($r->{file}{id}, $bin->{id}, 'the result names the Drive file');
is($r->{file}{md5Checksum}, $meta->{md5Checksum}, 'the result carries the md5 of Drive');
is($r->{payload}{key}, "$prefix$int/$bin->{id}/r$meta->{headRevisionId}",
   'the key is prefix, integration, file and head revision');
is($r->{payload}{uri}, "s3://$ENV{S3_BUCKET_NAME}/$r->{payload}{key}", 'the result has the s3 uri');
is($r->{payload}{bytes}, 300_000, 'the result counts the bytes');
my $content = emulator_content($bin->{id});
my $object = s3_object($r->{payload}{key});
ok(defined $object && sha256_hex($object) eq sha256_hex($content),
   'the object is byte for byte the file');
is($r->{payload}{sha256}, sha256_hex($content), 'the result has the sha256 of the bytes');

# a second trigger for the same version: Drive is asked (a trigger means
# "look now", no cache decides), nothing is uploaded
my $since = int(time * 1000);
$o = outcome(trigger(action => 'sync_file', file_id => $bin->{id}));
is($o->{result}{status}, 'unchanged', 'the same version again is unchanged');
is(scalar(requests('files.get', $int, $since)), 1,
   'the metadata came from Drive, not from the cache');
is(scalar(requests('files.media', $int, $since)), 0, 'nothing was downloaded again');

# a new version is uploaded under a new key
emulator(PATCH => "/files/$bin->{id}", { content_seed => 7 });
my $fresh = file(name => 'second.bin', size => 1000);
$o = outcome(trigger(action => 'sync_file', file_id => $fresh->{id}));
is($o->{result}{status}, 'uploaded', 'another file uploads');

# --- Workspace exports -------------------------------------------------------

my $doc = file(name => 'Plan', mimeType => 'application/vnd.google-apps.document', exportSize => 5000);
$o = outcome(trigger(action => 'sync_file', file_id => $doc->{id}));
$r = $o->{result};
my $docx = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
ok($r && $r->{status} eq 'uploaded', 'a Google Doc is exported') or diag explain $o;
is($r->{payload}{content_type}, $docx, 'as DOCX by default');
like($r->{payload}{key}, qr{/$doc->{id}/v\d+\.docx$}, 'under its version and format');
ok(s3_object($r->{payload}{key}) eq emulator_content($doc->{id}, $docx),
   'the object is the export, byte for byte');

$o = outcome(trigger(action => 'sync_file', file_id => $doc->{id}, export_mime_type => 'application/pdf'));
like($o->{result}{payload}{key} // '', qr/\.pdf$/, 'a trigger chooses another export format');
is(substr(s3_object($o->{result}{payload}{key}) // '', 0, 5), '%PDF-', 'and gets it');

my $big = file(name => 'Huge sheet', mimeType => 'application/vnd.google-apps.spreadsheet',
               exportSize => 11 * 1024 * 1024);
$since = int(time * 1000);
$o = outcome(trigger(action => 'sync_file', file_id => $big->{id}), 120);
ok($o->{result} && $o->{result}{status} eq 'uploaded',
   'an export over the 10 MB limit falls back to the export link') or diag explain $o;
is(scalar(requests('files.exportLink', $int, $since)), 1, 'the export link was used once');
my $xlsx = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
ok(sha256_hex(s3_object($o->{result}{payload}{key}) // '') eq sha256_hex(emulator_content($big->{id}, $xlsx)),
   'the big export is stored whole');

my $form = file(name => 'Survey', mimeType => 'application/vnd.google-apps.form');
$o = outcome(trigger(action => 'sync_file', file_id => $form->{id}));
is($o->{dead}{headers}{'gdrive.error.code'}, 'unsupported_type',
   'a kind of file Drive cannot export goes to the DLQ as unsupported_type');

# --- shortcuts and shared drives ----------------------------------------------

my $target = file(name => 'target.txt', size => 2048, mimeType => 'text/plain');
my $sc = file(name => 'link to target', mimeType => 'application/vnd.google-apps.shortcut',
              shortcutTarget => $target->{id});
$o = outcome(trigger(action => 'sync_file', file_id => $sc->{id}));
is($o->{result}{file}{id}, $target->{id}, 'a shortcut resolves to its target');
is($o->{result}{file}{shortcut_id}, $sc->{id}, 'and the result names the shortcut');
ok(s3_object($o->{result}{payload}{key}) eq emulator_content($target->{id}), 'the target is stored');

my $shared = file(name => 'team.bin', size => 4096, driveId => '0AsharedDrive1');
$o = outcome(trigger(action => 'sync_file', file_id => $shared->{id}));
is($o->{result}{status}, 'uploaded', 'a file on a shared drive is synced');

# --- failures ------------------------------------------------------------------

$o = outcome(trigger(action => 'sync_file', file_id => 'noSuchFile123'));
is($o->{dead}{headers}{'gdrive.error.code'}, 'not_found', 'a missing file goes to the DLQ as not_found');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'at once');

my $abusive = file(name => 'malware.exe', size => 100, abusive => JSON::PP::true());
$o = outcome(trigger(action => 'sync_file', file_id => $abusive->{id}));
is($o->{dead}{headers}{'gdrive.error.code'}, 'abusive_file', 'a file flagged as abusive is abusive_file');

my $denied = file(name => 'secret.bin', size => 100);
emulator(POST => '/faults', { endpoint => 'files.get', integration => $integrations[0],
                              file_id => $denied->{id}, status => 403,
                              reason => 'insufficientFilePermissions', times => -1 });
$o = outcome(trigger(action => 'sync_file', file_id => $denied->{id}, integration_id => $integrations[0]));
is($o->{dead}{headers}{'gdrive.error.code'}, 'permission_denied', '403 without a rate reason is permission_denied');

# a refused access token is dropped and refreshed once
my $i401 = $integrations[1];
my $f401 = file(name => 'a.bin', size => 10);
$since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'files.get', integration => $i401, status => 401, times => 1 });
$o = outcome(trigger(action => 'sync_file', file_id => $f401->{id}, integration_id => $i401));
is($o->{result}{status}, 'uploaded', 'a 401 is ridden out by a fresh token');
is($o->{result}{attempts}, 1, 'without spending an attempt');
cmp_ok(scalar(requests('token', $i401, $since)), '>=', 2, 'the token was refreshed after the 401');

# 429 with Retry-After: 2: the integration waits two seconds
my $i429 = $integrations[2];
my $f429 = file(name => 'b.bin', size => 10);
$since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'files.get', integration => $i429, status => 429,
                              retry_after => 2, reason => 'rateLimitExceeded', times => 1 });
$o = outcome(trigger(action => 'sync_file', file_id => $f429->{id}, integration_id => $i429));
is($o->{result}{status}, 'uploaded', 'a 429 is retried');
my @calls = grep { $_->{endpoint} =~ /^files\./ } requests('*', $i429, $since);
@calls = sort { $a->{time_ms} <=> $b->{time_ms} } @calls;
ok(@calls >= 2 && $calls[1]{time_ms} - $calls[0]{time_ms} >= 2000,
   'the next call to that integration came no sooner than Retry-After')
    or diag explain [map { "$_->{endpoint} $_->{status} $_->{time_ms}" } @calls];

# a 5xx storm and userRateLimitExceeded are ridden out with backoff
my $istorm = $integrations[3];
my $fstorm = file(name => 'c.bin', size => 10);
emulator(POST => '/faults', { endpoint => 'files.media', integration => $istorm, status => 503, times => 2 });
emulator(POST => '/faults', { endpoint => 'files.get', integration => $istorm, status => 403,
                              reason => 'userRateLimitExceeded', times => 1 });
$o = outcome(trigger(action => 'sync_file', file_id => $fstorm->{id}, integration_id => $istorm));
is($o->{result}{status}, 'uploaded', 'a 5xx storm and a user rate limit are ridden out');
is($o->{result}{attempts}, 4, 'each failure spent one attempt');

# the download quota opens the integration's circuit without spending attempts
my $iquota = $integrations[4];
my $fquota = file(name => 'd.bin', size => 10);
$since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'files.media', integration => $iquota, status => 403,
                              reason => 'downloadQuotaExceeded', times => 5 });
$o = outcome(trigger(action => 'sync_file', file_id => $fquota->{id}, integration_id => $iquota), 120);
is($o->{result}{status}, 'uploaded', 'a quota error waits for the circuit, then succeeds');
is($o->{result}{attempts}, 1, 'quota waits spend no attempt');
@calls = sort { $a->{time_ms} <=> $b->{time_ms} } requests('files.media', $iquota, $since);
ok(@calls == 6 && $calls[-1]{time_ms} - $calls[0]{time_ms} >= 5 * 2000,
   'each wait lasted the quota pause') or diag explain [map { "$_->{status} $_->{time_ms}" } @calls];

# --- folders -------------------------------------------------------------------

my $folder = file(name => 'Big folder', mimeType => 'application/vnd.google-apps.folder');
emulator(POST => "/folders/$folder->{id}/populate", { count => 1000, size => 16, prefix => "f$run-" });
my $sub = file(name => 'sub', mimeType => 'application/vnd.google-apps.folder', parents => [$folder->{id}]);
my $parent_id = trigger(action => 'sync_folder', folder_id => $folder->{id});
$o = outcome($parent_id, 120);
is($o->{result}{status}, 'fanned_out', 'a folder is fanned out');
is($o->{result}{children}, 1000, 'one child per file, sub-folders skipped');
is($o->{result}{pages}, 11, 'over all pages of the listing');
my %children;
for (kafka_consume($topic)) {
    my $j = eval { $JSON->decode($_->{payload}) } or next;
    next unless ($j->{parent_trigger_id} // '') eq $parent_id;
    $children{$j->{trigger_id}} = $j;
    is($_->{key}, $int, 'a child is keyed by the integration') if keys %children == 1;
}
is(scalar keys %children, 1000, 'exactly 1000 child triggers are in the topic');
is(scalar(grep { $_->{action} eq 'sync_file' && $_->{integration_id} eq $int } values %children), 1000,
   'each a sync_file of the same integration');
ok(!(grep { length $_ > 128 || /[^A-Za-z0-9._:-]/ } keys %children), 'child ids are valid trigger ids');

my $recursive = trigger(action => 'sync_folder', folder_id => $folder->{id}, recursive => JSON::PP::true());
$o = outcome($recursive, 120);
is($o->{result}{children}, 1001, 'a recursive sync also triggers the sub-folder');

# a listing that fails on page 7 is a failure, not a success with 600 files
my $ipage = $integrations[5];
emulator(POST => '/faults', { endpoint => 'files.list', integration => $ipage, page => 6,
                              status => 500, times => -1 });
$o = outcome(trigger(action => 'sync_folder', folder_id => $folder->{id}, integration_id => $ipage), 120);
ok(!$o->{result}, 'a listing failing on page 7 has no result');
is($o->{dead}{headers}{'gdrive.error.code'}, 'upstream_error', 'it goes to the DLQ as upstream_error');

# --- the changes feed --------------------------------------------------------------

$o = outcome(trigger(action => 'sync_changes'));
my $start = $o->{result}{new_start_page_token};
ok(defined $start, 'a feed without a page token starts with a fresh token');
my $c1 = file(name => 'new.bin', size => 64);
my $c2 = file(name => 'team-new.bin', size => 64, driveId => '0AsharedDrive1');
emulator(PATCH => "/files/$fresh->{id}", { name => 'renamed.bin' });
emulator(DELETE => "/files/$target->{id}");
my $changes = trigger(action => 'sync_changes', page_token => $start);
$o = outcome($changes, 60);
$r = $o->{result};
is($r->{status}, 'changes_listed', 'the changes are listed');
ok($r->{new_start_page_token} && $r->{new_start_page_token} ne $start, 'with the next start token');
my (%child_files, %deleted);
for (kafka_consume($topic)) {
    my $j = eval { $JSON->decode($_->{payload}) } or next;
    $child_files{$j->{file_id}} = 1 if ($j->{parent_trigger_id} // '') eq $changes;
}
for (kafka_consume("$topic.result")) {
    my $j = eval { $JSON->decode($_->{payload}) } or next;
    $deleted{$j->{file}{id}} = $j if ($j->{parent_trigger_id} // '') eq $changes && $j->{status} eq 'deleted';
}
ok($child_files{$c1->{id}} && $child_files{$fresh->{id}}, 'new and edited files get a sync_file');
ok($child_files{$c2->{id}}, 'a new file on a shared drive is in the feed too');
ok($deleted{$target->{id}}, 'a deleted file gets a deleted result');
ok(!$child_files{$target->{id}}, 'and no sync_file');

is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
