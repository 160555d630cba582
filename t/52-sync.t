#!/usr/bin/perl

# What lands in S3 is what is in Drive: a file edited between two syncs is
# stored again (same size or not), the changes feed hands the edit to its
# child, a trashed file is "deleted" and never uploaded (sync_file and the
# feed alike), a restored one comes back, a listing Drive says is
# incomplete is never reported complete, and gdrive_s3_on_delete decides
# whether a removed file's objects leave the bucket.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines kafka_consume kafka_json_by_id
                    unique_name wait_until emulator emulator_content
                    s3_object s3_request stack_env json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $run = unique_name('s');
my $n = 0;

sub nginx_for {
    my ($topic, $on_delete) = @_;
    my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=3 base=50ms max=200ms;
    gdrive_list_page_size 50;
    gdrive_s3_prefix $topic/;
    gdrive_s3_on_delete $on_delete;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF
    return $t;
}

sub trigger {
    my ($topic, %f) = @_;
    my $id = $f{trigger_id} //= sprintf '%s-%03d', $run, ++$n;
    kafka_produce_lines($topic, [$f{integration_id}, $JSON->encode(\%f)]);
    return $id;
}

sub requests {
    my ($endpoint, $integration, $since) = @_;
    my $r = emulator(GET => "/requests?integration=$integration&endpoint=$endpoint&since=$since");
    return @{ $r->{requests} // [] };
}

# the keys under a prefix, read from S3 itself
sub s3_keys {
    my ($prefix) = @_;
    my $env = { %{ stack_env() }, %ENV };
    my $p = $prefix =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ger;
    my ($code, $xml) = s3_request(GET => "/$env->{S3_BUCKET_NAME}?list-type=2&prefix=$p");
    return () unless $code eq '200';
    return $xml =~ m{<Key>([^<]*)</Key>}g;
}

sub s3_count { my @k = s3_keys(@_); return scalar @k }

# the children a listing or the changes feed produced
sub children_of {
    my ($topic, $parent) = @_;
    my %c;
    for (kafka_consume($topic)) {
        my $j = eval { $JSON->decode($_->{payload}) } or next;
        $c{$j->{file_id} // $j->{folder_id}} = $j if ($j->{parent_trigger_id} // '') eq $parent;
    }
    return \%c;
}

my $int = "int-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

# ------------------------------------------------ gdrive_s3_on_delete delete

my $topic = unique_name('sync');
my $t = nginx_for($topic, 'delete');
$t->run;

sub outcome { job_outcome($topic, @_) }
sub sync { trigger($topic, integration_id => $int, @_) }

ok(wait_until('warm-up', 60, sub {
    outcome(sync(action => 'sync_changes'), 5)->{result} }), 'the worker is up');

# 1 and 5: an edit between two syncs, same size and a new size
my $f = drive_file(name => 'notes.bin', size => 5000);
my $o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'uploaded', 'a file is synced');
my $first_key = $o->{result}{payload}{key} // '';

emulator(PATCH => "/files/$f->{id}", { content_seed => 11 });
my $meta = emulator(GET => "/files/$f->{id}?checksums=true");
is($meta->{size}, 5000, 'the edit kept the size');
my $since = int(time * 1000);
$o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'uploaded', 'an edit of the same size is uploaded, not unchanged')
    or diag explain $o;
is($o->{result}{payload}{key}, "$topic/$int/$f->{id}/r$meta->{headRevisionId}",
   'under the new revision');
isnt($o->{result}{payload}{key}, $first_key, 'which is a new key');
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($f->{id})),
   'the stored content is the edited content');
is(scalar(requests('files.get', $int, $since)), 1, 'the trigger asked Drive for the metadata');

emulator(PATCH => "/files/$f->{id}", { content_seed => 12, size => 7000 });
$o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'uploaded', 'an edit with a new size is uploaded');
is($o->{result}{payload}{bytes}, 7000, 'with its new size');
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($f->{id})),
   'and its new content');

# a sync without an edit is unchanged, and says so from Drive's metadata
$o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'unchanged', 'no edit: unchanged');

# 1: an edit then sync_changes from the previous token
$o = outcome(sync(action => 'sync_changes'));
my $token = $o->{result}{new_start_page_token};
emulator(PATCH => "/files/$f->{id}", { content_seed => 13 });
$meta = emulator(GET => "/files/$f->{id}?checksums=true");
my $changes = sync(action => 'sync_changes', page_token => $token);
$o = outcome($changes);
is($o->{result}{status}, 'changes_listed', 'the feed is listed after an edit');
my $child = children_of($topic, $changes)->{$f->{id}};
ok($child, 'the edited file gets a child trigger') or diag explain $o;
is($child->{drive_file}{headRevisionId}, $meta->{headRevisionId},
   'which carries the metadata of the changes page');
$o = outcome($child->{trigger_id});
is($o->{result}{status}, 'uploaded', 'the child uploads the edit');
is($o->{result}{payload}{key}, "$topic/$int/$f->{id}/r$meta->{headRevisionId}",
   'at the new revision');
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($f->{id})),
   'with the edited content');

# a child's carried metadata that is no longer true (an edit after the
# page) is caught by the content check and retried from Drive
$o = outcome(sync(action => 'sync_changes'));
$token = $o->{result}{new_start_page_token};
emulator(PATCH => "/files/$f->{id}", { content_seed => 14 });
# the feed is listed while the worker is fast: edit again behind its back
# by producing the child ourselves with the stale metadata
my $stale = emulator(GET => "/files/$f->{id}?checksums=true");
emulator(PATCH => "/files/$f->{id}", { content_seed => 15 });
$meta = emulator(GET => "/files/$f->{id}?checksums=true");
my $sid = sync(action => 'sync_file', file_id => $f->{id},
               drive_file => { map { $_ => $stale->{$_} }
                               qw(id name mimeType size md5Checksum version headRevisionId trashed) });
$o = outcome($sid);
is($o->{result}{status}, 'uploaded', 'stale carried metadata still ends uploaded') or diag explain $o;
is($o->{result}{payload}{key}, "$topic/$int/$f->{id}/r$meta->{headRevisionId}",
   'at the current revision, asked from Drive again');
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($f->{id})),
   'with the current content');

# every export format has a key of its own: RTF then EPUB of one Doc
my $doc = drive_file(name => 'Minutes', mimeType => 'application/vnd.google-apps.document', exportSize => 3000);
$o = outcome(sync(action => 'sync_file', file_id => $doc->{id}, export_mime_type => 'application/rtf'));
is($o->{result}{status}, 'uploaded', 'a Doc exported as RTF');
like($o->{result}{payload}{key} // '', qr/\.rtf$/, 'under an .rtf key');
$o = outcome(sync(action => 'sync_file', file_id => $doc->{id}, export_mime_type => 'application/epub+zip'));
is($o->{result}{status}, 'uploaded', 'the same Doc as EPUB is uploaded, not found unchanged');
like($o->{result}{payload}{key} // '', qr/\.epub$/, 'under an .epub key');
is(s3_object($o->{result}{payload}{key}), emulator_content($doc->{id}, 'application/epub+zip'),
   'and the object is the EPUB');

# 2 and 4: trash, then sync_file: deleted, objects removed, nothing uploaded
my $keys_before = s3_count("$topic/$int/$f->{id}/");
cmp_ok($keys_before, '>=', 4, 'the file has several revisions stored');
emulator(PATCH => "/files/$f->{id}", { trashed => JSON::PP::true() });
$since = int(time * 1000);
$o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'deleted', 'a trashed file is deleted') or diag explain $o;
is($o->{result}{deleted_objects}, $keys_before, 'the result counts the objects deleted');
is(scalar(requests('files.media', $int, $since)), 0, 'nothing was downloaded');
is(s3_count("$topic/$int/$f->{id}/"), 0, 'no object of the file is left');

# restore: the next sync stores it again
emulator(PATCH => "/files/$f->{id}", { trashed => JSON::PP::false() });
$o = outcome(sync(action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'uploaded', 'a restored file comes back on the next sync');
is(s3_count("$topic/$int/$f->{id}/"), 1, 'as one object');

# trash and removal through the changes feed
my $g = drive_file(name => 'gone.bin', size => 100);
my $h = drive_file(name => 'trashed.bin', size => 100);
is(outcome(sync(action => 'sync_file', file_id => $g->{id}))->{result}{status}, 'uploaded', 'another file');
is(outcome(sync(action => 'sync_file', file_id => $h->{id}))->{result}{status}, 'uploaded', 'and another');
$o = outcome(sync(action => 'sync_changes'));
$token = $o->{result}{new_start_page_token};
emulator(DELETE => "/files/$g->{id}");
emulator(PATCH => "/files/$h->{id}", { trashed => JSON::PP::true() });
$changes = sync(action => 'sync_changes', page_token => $token);
$o = outcome($changes);
is($o->{result}{status}, 'changes_listed', 'a feed with a removal and a trash');
my $kids = children_of($topic, $changes);
for my $x ([$g, 'removed'], [$h, 'trashed']) {
    my $c = $kids->{$x->[0]{id}};
    ok($c, "the $x->[1] file gets a child that deletes") or next;
    $o = outcome($c->{trigger_id});
    is($o->{result}{status}, 'deleted', "the $x->[1] file ends deleted");
    is($o->{result}{deleted_objects}, 1, 'its object is deleted');
    is(s3_count("$topic/$int/$x->[0]{id}/"), 0, 'and gone from the bucket');
}

# 3: a listing Drive marks incomplete is narrowed to the folder's drive
my $folder = drive_file(name => 'team folder', mimeType => 'application/vnd.google-apps.folder',
                        driveId => '0AteamDrive9');
emulator(POST => "/folders/$folder->{id}/populate",
         { count => 30, size => 10, prefix => "i$run-", driveId => '0AteamDrive9' });
emulator(POST => '/config', { incomplete_search => JSON::PP::true() });
$since = int(time * 1000);
my $fid = sync(action => 'sync_folder', folder_id => $folder->{id});
$o = outcome($fid);
is($o->{result}{status}, 'fanned_out', 'an incomplete listing is listed again in the folder\'s drive')
    or diag explain $o;
is($o->{result}{children}, 30, 'and every file is a child');
my @lists = requests('files.list', $int, $since);
ok((grep { $_->{path} =~ /corpora=drive/ && $_->{path} =~ /driveId=0AteamDrive9/ } @lists),
   'the second listing asked the folder\'s drive');

# a drive that stays incomplete fails the listing, never fans out
emulator(POST => '/config', { incomplete_search => 'always' });
$o = outcome(sync(action => 'sync_folder', folder_id => $folder->{id}));
ok(!$o->{result}, 'a listing that stays incomplete has no result');
is($o->{dead}{headers}{'gdrive.error.code'}, 'upstream_error', 'it fails as transient, then dead-letters');
like($o->{dead}{headers}{'gdrive.error.message'} // '', qr/incomplete/, 'saying why');
emulator(POST => '/config', { incomplete_search => JSON::PP::false() });

is_deeply([$t->alerts], [], 'nginx logged no alert');
$t->stop;

# ------------------------------------------------- gdrive_s3_on_delete keep

$topic = unique_name('keep');
$t = nginx_for($topic, 'keep');
$t->run;

ok(wait_until('warm-up', 60, sub {
    outcome(sync(action => 'sync_changes'), 5)->{result} }), 'a worker that keeps deleted files is up');

my $k = drive_file(name => 'kept.bin', size => 300);
$o = outcome(sync(action => 'sync_file', file_id => $k->{id}));
my $kept_key = $o->{result}{payload}{key};
emulator(PATCH => "/files/$k->{id}", { trashed => JSON::PP::true() });
$since = int(time * 1000);
$o = outcome(sync(action => 'sync_file', file_id => $k->{id}));
is($o->{result}{status}, 'deleted', 'with keep, a trashed file is deleted too');
ok(!exists $o->{result}{deleted_objects}, 'without deleting objects');
ok(!exists $o->{result}{payload}, 'and without a payload');
is(scalar(requests('files.media', $int, $since)), 0, 'nothing was downloaded');
ok(defined s3_object($kept_key), 'its object stays');

$o = outcome(sync(action => 'sync_changes'));
$token = $o->{result}{new_start_page_token};
emulator(PATCH => "/files/$k->{id}", { trashed => JSON::PP::false() });
my $r2 = drive_file(name => 'removed-later.bin', size => 50);
is(outcome(sync(action => 'sync_file', file_id => $r2->{id}))->{result}{status}, 'uploaded',
   'a file the worker syncs');
$o = outcome(sync(action => 'sync_changes'));
my $token2 = $o->{result}{new_start_page_token};
emulator(DELETE => "/files/$r2->{id}");
$changes = sync(action => 'sync_changes', page_token => $token2);
$o = outcome($changes);
is($o->{result}{deleted}, 1, 'with keep, the feed reports the removal');
my ($ev) = grep { ($_->{parent_trigger_id} // '') eq $changes && $_->{status} eq 'deleted' }
           map { eval { $JSON->decode($_->{payload}) } || () } kafka_consume("$topic.result");
is($ev->{file}{id}, $r2->{id}, 'as a deleted event of the file');
is($ev->{file}{name}, 'removed-later.bin', 'named from what the worker saw of it last');
ok(!children_of($topic, $changes)->{$r2->{id}}, 'and no child trigger');

$o = outcome(sync(action => 'sync_file', file_id => $k->{id}));
is($o->{result}{status}, 'unchanged', 'a restored file with keep finds its object');

is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
