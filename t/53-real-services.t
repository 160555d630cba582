#!/usr/bin/perl

# What a first production deployment meets, modelled as Google and AWS
# document it: a control plane that answers only a refresh token and
# authenticates its callers, export links that redirect to a content
# host (and links or redirects to hosts that must never see the token),
# S3 without s3:ListBucket (403 to the HEAD of a missing key), buckets
# that require server-side encryption, object metadata that names the
# file's origin, and Drive's fileNotDownloadable, resource keys, daily
# limits and expired tokens.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines unique_name wait_until
                    emulator emulator_content s3_object s3_request stack_env json
                    consumer_conf fault_proxy);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $env = { %{ stack_env() }, %ENV };
my $run = unique_name('r');
my $n = 0;
my $MiB = 1024 * 1024;

# S3 through the fault proxy, which records headers and plays AWS
my ($proxy, $proxy_api) = fault_proxy($env->{S3_ENDPOINT});

# a listener of the test's own that must never hear from the module: the
# fault proxy in front of the emulator, on an authority nobody trusts
my ($stranger, $stranger_api) = fault_proxy($env->{GOOGLE_API_URL});

END { emulator(POST => '/config', { cp_token => undef }) if $env->{GOOGLE_EMULATOR_ADMIN_URL} }

sub nginx_for {
    my ($topic, $extra) = @_;
    return GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=3 base=50ms max=200ms;
    gdrive_quota_pause 2s;
    gdrive_s3_prefix $topic/;
    gdrive_s3_endpoint $proxy;
    gdrive_control_plane_token cp-secret-$run;
    gdrive_stream_buffers 2 5m;
$extra

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
    }
EOF
}

my ($topic, $t);

sub trigger {
    my (%f) = @_;
    my $id = $f{trigger_id} //= sprintf '%s-%03d', $run, ++$n;
    kafka_produce_lines($topic, [$f{integration_id}, $JSON->encode(\%f)]);
    return $id;
}

sub outcome { job_outcome($topic, @_) }

sub requests {
    my ($endpoint, $integration, $since) = @_;
    my $r = emulator(GET => "/requests?integration=$integration&endpoint=$endpoint&since=$since");
    return @{ $r->{requests} // [] };
}

sub proxied { my ($re) = @_; return grep { $_->{url} =~ $re } @{ $proxy_api->(GET => '/requests') } }

# ------------------------------------------------------------ the control plane

$topic = unique_name('real');
$t = nginx_for($topic, "    gdrive_s3_sse AES256;\n    gdrive_s3_storage_class STANDARD_IA;");
emulator(POST => '/config', { cp_token => "cp-secret-$run" });
$proxy_api->(POST => '/mode', { no_list_bucket => JSON::PP::true(), require_sse => 'AES256' });

my $int = "int-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int,
                                      refresh_token_only => JSON::PP::true() });
my (undef, $cp) = emulator(GET => '/requests?endpoint=cp.credentials');
$t->run;

ok(wait_until('warm-up', 60, sub {
    outcome(trigger(integration_id => $int, action => 'sync_changes'), 5)->{result} }),
   'a control plane that answers only a refresh token: the configured client is used');
my @cp = requests('cp.credentials', $int, 0);
ok(@cp && $cp[-1]{authorization}, 'the control plane was asked with the worker\'s bearer token');
is($cp[-1]{status}, 200, 'and answered');

my $unknown = "nobody-$run";
my $o = outcome(trigger(integration_id => $unknown, action => 'sync_changes'));
is($o->{dead}{headers}{'gdrive.error.code'}, 'integration_unknown',
   'an integration the control plane does not know is integration_unknown');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'at once: it is permanent');

my $i5 = "int5-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i5", integration_id => $i5 });
emulator(POST => '/faults', { endpoint => 'cp.credentials', integration => $i5, status => 503, times => 2 });
$o = outcome(trigger(integration_id => $i5, action => 'sync_changes'));
is($o->{result}{status}, 'changes_listed', 'a control plane answering 503 is retried');
is($o->{result}{attempts}, 3, 'with backoff, one attempt per 503');

emulator(POST => '/config', { cp_token => "rotated-$run" });
my $i4 = "int4-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$i4", integration_id => $i4 });
$o = outcome(trigger(integration_id => $i4, action => 'sync_changes'));
is($o->{dead}{headers}{'gdrive.error.code'}, 'control_plane_denied',
   'a control plane refusing the worker\'s token is control_plane_denied');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'permanent');
like($t->error_log, qr/\[error\].*control plane refused the worker's credentials.*HTTP 401.*missing bearer token|\[error\].*control plane refused.*HTTP 401/,
     'an error log line names the control plane\'s answer');
unlike($t->error_log, qr/cp-secret-$run/, 'the control plane token is never logged');
emulator(POST => '/config', { cp_token => "cp-secret-$run" });

# ------------------------------------------------------ S3 as AWS answers it

my $f = drive_file(name => "Relevé d'été №1.bin", size => 3000);
my $since = int(time * 1000);
$proxy_api->(DELETE => '/requests');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'uploaded', 'without s3:ListBucket (HEAD answers 403) a new file is uploaded')
    or diag explain $o;
my $key = $o->{result}{payload}{key} // '';
my ($head) = proxied(qr/^\/[^?]*\Q$f->{id}\E/);
is($head->{method}, 'HEAD', 'the HEAD came first');
is($head->{status}, 403, 'and AWS\'s 403 was what it got');
my ($put) = grep { $_->{method} eq 'PUT' } proxied(qr/\Q$f->{id}\E/);
is($put->{headers}{'x-amz-server-side-encryption'}, 'AES256', 'the PUT asks for SSE');
like($put->{headers}{authorization}, qr/SignedHeaders=[^,]*x-amz-server-side-encryption/, 'signed');
is($put->{headers}{'x-amz-storage-class'}, 'STANDARD_IA', 'with the storage class');
is($put->{headers}{'x-amz-meta-drive-file-id'}, $f->{id}, 'metadata: the Drive file id');
is($put->{headers}{'x-amz-meta-integration-id'}, $int, 'the integration');
is($put->{headers}{'x-amz-meta-trigger-id'}, $o->{result}{trigger_id}, 'the trigger');
my $meta = emulator(GET => "/files/$f->{id}?checksums=true");
is($put->{headers}{'x-amz-meta-drive-md5'}, $meta->{md5Checksum}, 'Drive\'s md5');
my $name = $put->{headers}{'x-amz-meta-drive-name'} // '';
unlike($name, qr/[^\x21-\x7e]/, 'the name as ASCII');
my $decoded = $name =~ s/%([0-9A-F]{2})/chr hex $1/ger;
utf8::decode($decoded);
is($decoded, "Relevé d'été №1.bin", 'percent-encoded UTF-8 of the Drive name');
is(sha256_hex(s3_object($key) // ''), sha256_hex(emulator_content($f->{id})), 'the object is the file');

my ($code, $headers) = s3_request(HEAD => "/$env->{S3_BUCKET_NAME}/$key", headers => 1);
like($headers, qr/^x-amz-meta-drive-file-id:\s*\Q$f->{id}\E\s*$/mi, 'S3 keeps the metadata: a person finds the origin');

$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $f->{id}));
is($o->{result}{status}, 'unchanged', 'a file already stored is found: the HEAD of an existing key needs only s3:GetObject');
is($o->{result}{payload}{key}, $key, 'at the same key');

# multipart: SSE and metadata on CreateMultipartUpload, never on parts
my $big = drive_file(name => 'big.bin', size => 12 * $MiB);
$proxy_api->(DELETE => '/requests');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $big->{id}), 120);
is($o->{result}{status}, 'uploaded', 'a multipart upload into an SSE bucket') or diag explain $o;
cmp_ok($o->{result}{payload}{parts}, '>=', 2, 'in parts');
my ($create) = grep { $_->{method} eq 'POST' && $_->{url} =~ /[?&]uploads/ } proxied(qr/\Q$big->{id}\E/);
is($create->{headers}{'x-amz-server-side-encryption'}, 'AES256', 'CreateMultipartUpload asks for SSE');
is($create->{headers}{'x-amz-meta-drive-file-id'}, $big->{id}, 'and names the file');
my @parts = grep { $_->{url} =~ /partNumber=/ } proxied(qr/\Q$big->{id}\E/);
ok(@parts >= 2 && !(grep { exists $_->{headers}{'x-amz-server-side-encryption'}
                             || exists $_->{headers}{'x-amz-storage-class'} } @parts),
   'parts carry neither SSE nor the storage class');
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($big->{id})),
   'the object is whole');

# a name that would not fit S3's 2 KB of metadata is cut, not refused
my $long = drive_file(name => ('é' x 1500) . '.bin', size => 100);
$proxy_api->(DELETE => '/requests');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $long->{id}));
is($o->{result}{status}, 'uploaded', 'a file with a 3000-byte name is stored');
($put) = grep { $_->{method} eq 'PUT' } proxied(qr/\Q$long->{id}\E/);
my $total = 0;
for my $h (keys %{ $put->{headers} }) {
    $total += length($h) - length('x-amz-meta-') + length($put->{headers}{$h}) if $h =~ /^x-amz-meta-/;
}
cmp_ok($total, '<=', 2048, "its metadata stays within S3's 2 KB ($total bytes)");
like($put->{headers}{'x-amz-meta-drive-name'} // '', qr/^(%C3%A9)+$/, 'the name is cut between characters');

# --------------------------------------------------- export links and trust

my $doc = drive_file(name => 'Big doc', mimeType => 'application/vnd.google-apps.document',
                     exportSize => 12 * $MiB);
$since = int(time * 1000);
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $doc->{id}), 120);
is($o->{result}{status}, 'uploaded', 'a 12 MiB Doc goes through its export link\'s redirect') or diag explain $o;
my $docx = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
is(sha256_hex(s3_object($o->{result}{payload}{key}) // ''), sha256_hex(emulator_content($doc->{id}, $docx)),
   'byte for byte');
my ($link) = requests('files.exportLink', $int, $since);
is($link->{status}, 307, 'the export link redirected');
my @content = grep { $_->{path} =~ /\Q$doc->{id}\E/ }
              @{ emulator(GET => "/requests?endpoint=files.exportContent&since=$since")->{requests} };
is($content[-1]{status}, 200, 'and the content host answered');

$stranger_api->(DELETE => '/requests');
my $evil = drive_file(name => 'Evil doc', mimeType => 'application/vnd.google-apps.document',
                      exportSize => 11 * $MiB, exportLinksBase => $stranger);
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $evil->{id}));
is($o->{dead}{headers}{'gdrive.error.code'}, 'untrusted_link',
   'an export link to an untrusted host is refused');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'permanently');
is_deeply($stranger_api->(GET => '/requests'), [], 'and the host never heard from the worker');

my $redir = drive_file(name => 'Redirected doc', mimeType => 'application/vnd.google-apps.document',
                       exportSize => 11 * $MiB);
emulator(POST => '/faults', { endpoint => 'files.exportLink', file_id => $redir->{id},
                              redirect => "$stranger/steal?token=please", times => 1 });
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $redir->{id}));
is($o->{dead}{headers}{'gdrive.error.code'}, 'untrusted_link',
   'a redirect from a trusted host to an untrusted one is refused');
is_deeply($stranger_api->(GET => '/requests'), [], 'the token never left for it');

# ------------------------------------------------------------ Drive's answers

# metadata that says binary while Drive says fileNotDownloadable
my $conv = drive_file(name => 'Converted', mimeType => 'application/vnd.google-apps.document');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $conv->{id},
                     drive_file => { id => $conv->{id}, name => 'Converted', mimeType => 'application/pdf',
                                     size => '100', headRevisionId => 'stale', trashed => JSON::PP::false() }));
is($o->{result}{status}, 'uploaded', 'fileNotDownloadable: the export path is taken instead') or diag explain $o;
is($o->{result}{payload}{content_type}, $docx, 'as an export');
is($o->{result}{attempts}, 2, 'after asking Drive again');

# a file behind a resource key
my $keyed = drive_file(name => 'shared by link.bin', size => 500, resourceKey => '0-Key_abc');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $keyed->{id}));
is($o->{result}{status}, 'uploaded', 'a file behind a resource key is read with X-Goog-Drive-Resource-Keys')
    or diag explain $o;

# the daily limit without Retry-After opens the circuit for the quota pause
my $daily = drive_file(name => 'daily.bin', size => 10);
$since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'files.media', integration => $int, file_id => $daily->{id},
                              status => 403, reason => 'dailyLimitExceeded', times => 1 });
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $daily->{id}), 60);
is($o->{result}{status}, 'uploaded', 'dailyLimitExceeded without Retry-After is waited out');
is($o->{result}{attempts}, 1, 'without spending an attempt');
my @m = sort { $a->{time_ms} <=> $b->{time_ms} } requests('files.media', $int, $since);
ok(@m == 2 && $m[1]{time_ms} - $m[0]{time_ms} >= 2000, 'for gdrive_quota_pause')
    or diag explain \@m;

# an access token that expires in the middle: 401 invalid_token on the download
my $exp = drive_file(name => 'expiring.bin', size => 10);
$since = int(time * 1000);
emulator(POST => '/faults', { endpoint => 'files.media', integration => $int, file_id => $exp->{id},
                              status => 401, times => 1 });
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $exp->{id}));
is($o->{result}{status}, 'uploaded', 'a 401 invalid_token on the download is ridden out');
cmp_ok(scalar(requests('token', $int, $since)), '>=', 1, 'with a fresh token');

# an access token that would smuggle a header line is not used
my $ievil = "intx-$run";
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$ievil", integration_id => $ievil });
emulator(POST => '/faults', { endpoint => 'token', integration => $ievil, status => 200, times => -1,
                              body => { access_token => "ya29.a\r\nX-Injected: 1", expires_in => 3599,
                                        token_type => 'Bearer' } });
$since = int(time * 1000);
$o = outcome(trigger(integration_id => $ievil, action => 'sync_changes'));
is($o->{dead}{headers}{'gdrive.error.code'}, 'upstream_error',
   'an access token with a line break is refused');
like($o->{dead}{headers}{'gdrive.error.message'} // '', qr/no usable access_token/, 'as unusable');
is(scalar(requests('changes.startPageToken', $ievil, $since)), 0, 'and never sent');
emulator(DELETE => '/faults');

# ids of dots never reach a URL path
$since = int(time * 1000);
kafka_produce_lines($topic, ['..', qq({"trigger_id":"dots-$run","integration_id":"..","action":"sync_changes"})]);
$o = outcome("dots-$run");
is($o->{dead}{headers}{'gdrive.error.code'}, 'invalid_message', 'an integration id ".." is an invalid message');
is(scalar(grep { $_->{path} =~ m{/integrations/\.} }
          @{ emulator(GET => "/requests?since=$since")->{requests} // [] }), 0,
   'and the control plane never saw a dot segment');

is_deeply([$t->alerts], [], 'nginx logged no alert');
$t->stop;

# ------------------------------------------------ a bucket that wants aws:kms

$topic = unique_name('kms');
$t = nginx_for($topic, "    gdrive_s3_sse aws:kms key=arn:aws:kms:us-east-1:111122223333:key/$run;");
$proxy_api->(POST => '/mode', { no_list_bucket => JSON::PP::false(), require_sse => 'AES256' });
$t->run;
ok(wait_until('warm-up', 60, sub {
    outcome(trigger(integration_id => $int, action => 'sync_changes'), 5)->{result} }), 'another worker');

my $k = drive_file(name => 'kms.bin', size => 200);
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $k->{id}));
is($o->{dead}{headers}{'gdrive.error.code'}, 's3_access_denied',
   'a bucket policy refusing the PUT is s3_access_denied');

$proxy_api->(POST => '/mode', { require_sse => 'aws:kms' });
$proxy_api->(DELETE => '/requests');
$o = outcome(trigger(integration_id => $int, action => 'sync_file', file_id => $k->{id}));
is($o->{result}{status}, 'uploaded', 'with the policy met, it is stored');
($put) = grep { $_->{method} eq 'PUT' } proxied(qr/\Q$k->{id}\E/);
is($put->{headers}{'x-amz-server-side-encryption-aws-kms-key-id'},
   "arn:aws:kms:us-east-1:111122223333:key/$run", 'with the KMS key');
like($put->{headers}{authorization}, qr/x-amz-server-side-encryption-aws-kms-key-id/, 'signed');

is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
