#!/usr/bin/perl

# Smoke test of the local stack the other tests stand on: a real Kafka
# broker, an S3-compatible server that checks SigV4 signatures, and the
# Google emulator, each exercised through the harness.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempfile);
use HTTP::Tiny;
use GDrive::Test qw(kafka_produce kafka_consume unique_name emulator
                    s3_request json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

# --- Kafka --------------------------------------------------------------------

my $topic = unique_name('smoke');
my $value = qq({"hello":"kafka","bytes":"\x{e9}t\x{e9}"});
kafka_produce($topic, ['key-1', $value], ['key-2', 'second']);
my @recs = GDrive::Test::wait_until('records', 30, sub {
    my @r = kafka_consume($topic);
    @r == 2 ? \@r : undef;
});
my @got = @{ $recs[0] // [] };
is(scalar @got, 2, 'Kafka: two records produced and consumed');
my ($first) = grep { ($_->{key} // '') eq 'key-1' } @got;
is($first->{payload}, $value, 'Kafka: the value is byte for byte');

# --- S3 -----------------------------------------------------------------------

my $bucket = $ENV{S3_BUCKET_NAME};
my $key = unique_name('smoke') . '/object.bin';
my ($fh, $file) = tempfile(UNLINK => 1);
binmode $fh;
my $data = join '', map { chr(($_ * 7) % 256) } 1 .. 100_000;
print $fh $data;
close $fh;

my ($code) = s3_request(PUT => "/$bucket/$key", file => $file);
is($code, 200, 'S3: a signed PUT stores an object');

my ($get_code, $body) = s3_request(GET => "/$bucket/$key");
is($get_code, 200, 'S3: a signed GET reads it back');
is(sha256_hex($body), sha256_hex($data), 'S3: byte for byte');

my ($bad_code, $bad_body) = s3_request(GET => "/$bucket/$key",
                                       secret => 'not-the-secret');
is($bad_code, 403, 'S3: a request signed with a wrong secret is refused');
like($bad_body, qr/SignatureDoesNotMatch/, 'S3: because the signature is checked');

# curl signs the query as written: "uploads=" is the canonical form
my ($init_code, $init) = s3_request(POST => "/$bucket/$key.mp?uploads=");
is($init_code, 200, 'S3: a multipart upload starts');
my ($upload_id) = $init =~ m{<UploadId>([^<]+)</UploadId>};
ok($upload_id, 'S3: with an upload id');
my ($abort_code) = s3_request(DELETE => "/$bucket/$key.mp?uploadId=$upload_id");
is($abort_code, 204, 'S3: and can be aborted');

# --- the Google emulator --------------------------------------------------------

my ($st, $res) = emulator(POST => '/reset');
is($st, 200, 'emulator: admin API answers');

my $ua = HTTP::Tiny->new;
my $tok = $ua->post_form($ENV{GOOGLE_TOKEN_URL}, {
    grant_type => 'refresh_token', client_id => $ENV{GOOGLE_CLIENT_ID},
    client_secret => $ENV{GOOGLE_CLIENT_SECRET},
    refresh_token => $ENV{GOOGLE_REFRESH_TOKEN} });
is($tok->{status}, 200, 'emulator: the refresh token buys an access token');
my $access = eval { json()->decode($tok->{content})->{access_token} };
ok($access, 'emulator: an access token');

($st, $res) = emulator(POST => '/files', { id => 'smokeFile1',
    name => 'smoke.bin', mimeType => 'application/octet-stream',
    size => 12345 });
is($st, 200, 'emulator: a file is seeded');

my $meta = $ua->get("$ENV{GOOGLE_API_URL}/drive/v3/files/smokeFile1"
                    . '?fields=id,name,size,md5Checksum&supportsAllDrives=true',
                    { headers => { authorization => "Bearer $access" } });
is($meta->{status}, 200, 'emulator: files.get answers');
my $m = eval { json()->decode($meta->{content}) } // {};
is($m->{size}, '12345', 'emulator: with the size as Drive gives it');

my $media = $ua->get("$ENV{GOOGLE_API_URL}/drive/v3/files/smokeFile1?alt=media",
                     { headers => { authorization => "Bearer $access" } });
is(length $media->{content}, 12345, 'emulator: alt=media has the content');

my $bad = $ua->get("$ENV{GOOGLE_API_URL}/drive/v3/files/smokeFile1",
                   { headers => { authorization => 'Bearer wrong' } });
is($bad->{status}, 401, 'emulator: a wrong token gets 401');

($st, $res) = emulator(GET => '/requests?endpoint=token');
ok(($res->{counts}{token} // 0) >= 1, 'emulator: counts token requests');

# the emulator's own checks: Google's documented answers and every fault
# the other tests rely on (it resets the emulator when it is done)
my $self = `bash $FindBin::Bin/emulator/selftest.sh 2>&1`;
is($?, 0, 'emulator: its self-test passes') or diag $self;

done_testing;
