#!/usr/bin/perl

# AWS temporary credentials, end to end: nginx with 2 workers, the stack's
# Kafka and S3 server behind the fault proxy in its sts_key mode (S3 for a
# caller with temporary credentials: an ASIA key, a signed session token
# the STS emulator issued and that has not expired, nothing else), and
# the STS AssumeRoleWithWebIdentity emulator (t/stack/sts-emulator.js)
# issuing credentials that live seconds.
#
# Web identity: the first credentials and an upload signed with them, one
# STS request for both workers; renewed before expiry, one request per
# renewal and not one per worker, uploads still accepted; the token file
# rotated (the next request sends the new token, the only one STS takes);
# STS refusing (an error line with STS's Code and Message, never the token;
# health's s3.credentials fails with it); STS down (jobs wait, none in the
# DLQ, all uploaded once STS is back); a multipart upload longer than
# the credentials' renewal signs its parts with the newest ones.  Static keys with a session token:
# sent as x-amz-security-token and signed.  nginx -t: a role without a
# token file is refused; static keys beside web identity are named unused.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IPC::Open2;
use HTTP::Tiny;
use Time::HiRes qw(sleep time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines emulator
                    emulator_content s3_object unique_name wait_until
                    stack_env json fault_proxy consumer_conf repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $env = { %{ stack_env() }, %ENV };
my $ROLE = 'arn:aws:iam::123456789012:role/gdrive-worker';
my $KEY = 'sts-' . unique_name('k');

# --- the STS emulator and the proxy that is S3 for its credentials ------------

my $sts_pid = open2(my $sts_out, my $sts_in, 'node',
                    repo_root() . '/t/stack/sts-emulator.js', '--key', $KEY, '--port', '0');
my ($sts) = (<$sts_out> // '') =~ m{(http://\S+)} or BAIL_OUT('the STS emulator did not start');
END { kill 'TERM', $sts_pid if $sts_pid }

sub sts {
    my ($method, $path, $body) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)->request($method, "$sts/__sts$path", {
        headers => { 'content-type' => 'application/json' },
        (defined $body ? (content => $JSON->encode($body)) : ()) });
    return eval { $JSON->decode($res->{content}) };
}

sub sts_requests { @{ sts(GET => '/requests') // [] } }

my ($proxy, $proxy_api) = fault_proxy($env->{S3_ENDPOINT});
$proxy_api->(POST => '/mode', { sts_key => $KEY });

# credentials live 8 s: renewed 4 s before expiry (gdrive_sts_renew 4s),
# usable until 2 s before it
sts(POST => '/mode', { tokens => ['eyJ.token-A.sig'], role => $ROLE, duration => 8 });

my $topic = unique_name('aws');
my $prefix = "$topic/";
my $run = unique_name('a');
my $int = "int-$run";

my $t = GDrive::Test->new(workers => 2, env => { AWS_ACCESS_KEY_ID => undef,
                                                 AWS_SECRET_ACCESS_KEY => undef,
                                                 AWS_SESSION_TOKEN => undef });
my $token_file = $t->dir . '/token';

sub write_token {
    my ($token) = @_;
    # as the kubelet does: a new file renamed into place
    open my $fh, '>', "$token_file.new" or die $!;
    print $fh "$token\n";
    close $fh;
    rename "$token_file.new", $token_file or die $!;
}

write_token('eyJ.token-A.sig');

my $common = <<"EOF";
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_kafka_session_timeout 6s;
    gdrive_retry attempts=2 base=50ms max=200ms;
    gdrive_s3_endpoint $proxy;
    gdrive_s3_prefix $prefix;
    gdrive_stream_buffers 2 5m;
EOF

my $server = <<'EOF';
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { gdrive_health; }
        location = /status { gdrive_status; }
    }
EOF

# --- nginx -t ---------------------------------------------------------------------

$t->{http} = "$common    gdrive_s3_role_arn $ROLE;\n$server";
my ($rc, $out) = $t->test_conf;
isnt($rc, 0, 'nginx -t refuses a role without a token file');
like($out, qr/"gdrive_s3_role_arn" \(AWS_ROLE_ARN\) and "gdrive_s3_web_identity_token_file".*go together/,
     'and says what goes with it');

$t->{http} = "$common    gdrive_s3_role_arn $ROLE;\n"
    . "    gdrive_s3_web_identity_token_file $token_file;\n"
    . "    gdrive_s3_access_key AKIAEXAMPLE;\n    gdrive_s3_secret_key secret;\n$server";
($rc, $out) = $t->test_conf;
is($rc, 0, "web identity needs no static keys, and accepts them beside it") or diag $out;
like($out, qr/S3 signs with web identity \(the role "\Q$ROLE\E"\): the static access key.*not used/,
     'saying that web identity wins');

$t->{http} = "$common    gdrive_s3_role_arn $ROLE;\n"
    . "    gdrive_s3_web_identity_token_file $token_file;\n"
    . "    gdrive_s3_role_session_name 'a b';\n$server";
($rc, $out) = $t->test_conf;
isnt($rc, 0, 'nginx -t refuses a role session name STS would refuse');
like($out, qr/gdrive_s3_role_session_name.*may have only letters, digits and _\+=,\.\@-/,
     'and says what it may have');

$t->{http} = <<"EOF";
$common    gdrive_s3_role_arn $ROLE;
    gdrive_s3_web_identity_token_file $token_file;
    gdrive_s3_role_session_name gdrive-test;
    gdrive_sts_endpoint $sts;
    gdrive_sts_renew 4s;
$server
EOF

emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $t0 = time;
$t->run;

sub health { my $r = $t->http_json(GET => '/health'); return $r->{json}{checks}{'s3.credentials'} }

my $n = 0;

sub trigger {
    my (%o) = @_;
    my $f = drive_file(name => "f$n.bin", size => $o{size} // 1000 + $n);
    my $id = sprintf '%s-%03d', $run, ++$n;
    kafka_produce_lines($topic, [$int, $JSON->encode({ trigger_id => $id, integration_id => $int,
                                                       action => 'sync_file', file_id => $f->{id} })]);
    return ($id, $f);
}

sub uploaded {
    my ($id, $f, $what) = @_;
    my $o = job_outcome($topic, $id, 60);
    is($o->{result}{status}, 'uploaded', "$what: uploaded") or diag explain $o;
    is(s3_object($o->{result}{payload}{key}) // '', emulator_content($f->{id}),
       "$what: the object is the file");
}

# --- the first credentials --------------------------------------------------------

my $c = wait_until('credentials', 20, sub { my $h = health(); $h && $h->{ok} ? $h : undef });
ok($c, 's3.credentials is ok once STS answered') or diag explain health();
is($c->{mode}, 'web identity', 'in web identity mode');
my @req = sts_requests();
is(scalar @req, 1, 'one STS request for both workers');
is($req[0]{token}, 'eyJ.token-A.sig', 'with the token file\'s token');
is($req[0]{session}, 'gdrive-test', 'and the role session name');
ok(!$req[0]{signed}, 'unsigned, as AssumeRoleWithWebIdentity is');

$proxy_api->(DELETE => '/requests');
uploaded(trigger(), 'the first credentials');
my @s3 = @{ $proxy_api->(GET => '/requests') };
ok(@s3 && !grep({ ($_->{headers}{authorization} // '') !~ /Credential=ASIA/
                  || !$_->{headers}{'x-amz-security-token'} } @s3),
   'every S3 request is signed with the temporary key and carries its token');
ok(!grep({ $_->{status} == 403 } @s3), 'and S3 refused none (a HEAD of a new key is 404)')
    or diag explain [map { "$_->{method} $_->{url} $_->{status}" } @s3];

# --- renewal before expiry, across the 2 workers -----------------------------------

ok(wait_until('two renewals', 20, sub { sts_requests() >= 3 }), 'renewed twice');
@req = sts_requests();
my @gaps = map { $req[$_]{time} - $req[$_ - 1]{time} } 1 .. $#req;
ok(!grep({ $_ < 3000 } @gaps), 'one STS request per renewal, not one per worker')
    or diag "gaps: @gaps ms";
ok(!grep({ $_ > 5500 } @gaps), 'each 4 s before the 8 s credentials expire')
    or diag "gaps: @gaps ms";
uploaded(trigger(), 'after renewals');
uploaded(trigger(), 'again');

# a multipart upload longer than a renewal: each part is signed when it
# starts, with the credentials current then (2 buffers, so 2 parts at a
# time, each held 2.5 s by the proxy: 6 parts take about 8 s)
$proxy_api->(DELETE => '/requests');
$proxy_api->(POST => '/faults', { method => 'PUT', match => 'partNumber=', delay_ms => 2500, times => 6 });
my ($mid, $mf) = trigger(size => 30 * 1024 * 1024);
my $mo = job_outcome($topic, $mid, 60);
is($mo->{result}{status}, 'uploaded', 'a multipart upload across renewals: uploaded') or diag explain $mo;
is($mo->{result}{payload}{parts}, 6, 'in 6 parts');
my @parts = grep { $_->{method} eq 'PUT' && $_->{url} =~ /partNumber=/ } @{ $proxy_api->(GET => '/requests') };
my %keys = map { (($_->{headers}{authorization} // '') =~ /Credential=(ASIA\w+)/)[0] // '' => 1 } @parts;
cmp_ok(scalar keys %keys, '>=', 2, 'its parts are signed with the credentials of their time, not of its start')
    or diag explain [keys %keys];
ok(@parts == 6 && !grep({ $_->{status} != 200 } @parts), 'and S3 took every part');

# --- the token file rotated ---------------------------------------------------------

sts(POST => '/mode', { tokens => ['eyJ.token-B.sig'] });
write_token('eyJ.token-B.sig');
my $since = scalar sts_requests();
ok(wait_until('the new token', 10, sub {
    grep { $_->{token} eq 'eyJ.token-B.sig' && $_->{status} == 200 } (sts_requests())[$since .. $#{[sts_requests()]}]
}), 'the next renewal sends the rotated token, which STS takes');
uploaded(trigger(), 'after the rotation');

# --- STS refusing -------------------------------------------------------------------

sts(POST => '/mode', { tokens => ['eyJ.token-C.sig'] });
my $h = wait_until('refused', 15, sub { my $x = health(); $x && !$x->{ok} ? $x : undef });
ok($h, 's3.credentials fails once the credentials are past their use');
like($h->{detail} // '', qr/InvalidIdentityToken/, 'with STS\'s code in its detail') or diag explain $h;
my $log = do { local $/; open my $fh, '<', $t->dir . '/error.log'; <$fh> };
like($log, qr/\[error\].*STS refused AssumeRoleWithWebIdentity for role "\Q$ROLE\E" \(HTTP 400\): InvalidIdentityToken: Couldn't verify/,
     'an error line quotes STS\'s Code and Message');
unlike($log, qr/token-[ABC]/, 'the web identity token is never logged');
unlike($log, qr/x-amz-security-token|SessionToken/i, 'nor is the session token');

# --- STS down: jobs wait, then all are uploaded ----------------------------------------

sts(POST => '/mode', { tokens => ['eyJ.token-B.sig'], down => \1 });
my @jobs = map { [trigger()] } 1 .. 3;
sleep 4;
$h = health();
ok(!$h->{ok}, 's3.credentials still fails while STS is down');
like($h->{detail} // '', qr/503|ServiceUnavailable/, 'saying STS answers 503') or diag explain $h;
my $outcomes = 0;
for my $j (@jobs) {
    my $o = job_outcome($topic, $j->[0], 0.5);
    $outcomes++ if %$o;
}
is($outcomes, 0, 'the jobs wait: no result, nothing in the DLQ');
sts(POST => '/mode', { down => \0 });
uploaded(@$_, 'after STS came back') for @jobs;
ok(wait_until('healthy', 20, sub { my $x = health(); $x && $x->{ok} }), 's3.credentials is ok again');
$log = do { local $/; open my $fh, '<', $t->dir . '/error.log'; <$fh> };
like($log, qr/\[warn\].*aws credentials: STS answered HTTP 503: ServiceUnavailable/,
     'STS down is a warning line');
$t->stop;

# --- static keys with a session token -------------------------------------------------

sts(POST => '/mode', { tokens => '*', duration => undef });
my $res = HTTP::Tiny->new->post_form($sts, { Action => 'AssumeRoleWithWebIdentity',
    Version => '2011-06-15', RoleArn => $ROLE, RoleSessionName => 'static',
    WebIdentityToken => 'eyJ.static.sig', DurationSeconds => 900 });
my %cred = map { $_ => ($res->{content} =~ m{<$_>([^<]+)</$_>})[0] }
           qw(AccessKeyId SecretAccessKey SessionToken);
ok($cred{SessionToken}, 'temporary credentials from STS for static use');

my $topic2 = unique_name('aws-static');
my $s = GDrive::Test->new(workers => 1, env => { AWS_ACCESS_KEY_ID => undef,
                                                 AWS_SECRET_ACCESS_KEY => undef,
                                                 AWS_SESSION_TOKEN => $cred{SessionToken} },
                          http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic2) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=2 base=50ms max=200ms;
    gdrive_s3_endpoint $proxy;
    gdrive_s3_prefix $prefix;
    gdrive_s3_access_key $cred{AccessKeyId};
    gdrive_s3_secret_key $cred{SecretAccessKey};
$server
EOF
$s->run;
$proxy_api->(DELETE => '/requests');
my $f = drive_file(name => 'static.bin', size => 777);
kafka_produce_lines($topic2, [$int, $JSON->encode({ trigger_id => "$run-static", integration_id => $int,
                                                    action => 'sync_file', file_id => $f->{id} })]);
my $o = job_outcome($topic2, "$run-static", 60);
is($o->{result}{status}, 'uploaded', 'AWS_SESSION_TOKEN: uploaded') or diag explain $o;
@s3 = @{ $proxy_api->(GET => '/requests') };
ok(@s3 && !grep({ ($_->{headers}{'x-amz-security-token'} // '') ne $cred{SessionToken}
                  || ($_->{headers}{authorization} // '') !~ /SignedHeaders=[^,]*x-amz-security-token/ } @s3),
   'the session token is sent and signed');
my $sh = $s->http_json(GET => '/health')->{json}{checks}{'s3.credentials'};
is($sh->{mode}, 'session token', 'health says which mode');
my $diag = $s->http(GET => '/status?diagnostics');
like($diag->{content}, qr/gdrive_s3_session_token/, 'the diagnostics name the session token');
ok(index($diag->{content}, $cred{SessionToken}) < 0 && index($diag->{content}, $cred{SecretAccessKey}) < 0,
   'but show neither it nor the secret');
$s->stop;

diag sprintf 'took %.0f s', time - $t0;

done_testing;
