#!/usr/bin/perl

# Google service accounts with domain-wide delegation: the JSON key file
# Google issues (here the emulator's, which verifies the RS256 assertion
# with the account's public key), a token per (integration, user) in the
# shared cache, one token request per user even when two workers need it
# at once, the user named by the trigger or by the control plane, and an
# administrator's missing grant or a stale key as a permanent failure
# that says what to do. "nginx -t" names what is wrong with a key file.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use GDrive::Test qw(job_outcome drive_file kafka_produce_lines unique_name emulator
                    json consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $JSON = json();
my $dir = tempdir(CLEANUP => 1);
my $run = unique_name('sa');
my $email = "gdrive-$run\@proj.iam.gserviceaccount.com" =~ s/[^A-Za-z0-9@.-]/-/gr;
my ($alice, $bob, $carol, $dave) = map { "$_\@example.com" } qw(alice bob carol dave);

sub key_file {
    my ($name, %o) = @_;
    my $key = emulator(POST => '/service_accounts',
                       { client_email => $email, delegated => [$alice, $bob, $dave], %o });
    open my $fh, '>', "$dir/$name" or die $!;
    print $fh $JSON->encode($key);
    close $fh;
    return "$dir/$name";
}

# --- nginx -t -----------------------------------------------------------------

{
    open my $fh, '>', "$dir/junk.json" or die $!;
    print $fh '{"type":"service_account","client_email":"x@y.z","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}';
    close $fh;
    my $t = GDrive::Test->new(clean_env => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_brokers 127.0.0.1:9;
    gdrive_google_service_account $dir/junk.json;
    server { listen 127.0.0.1:%%PORT%%; location /t { gdrive_trigger; } }
EOF
    my ($rc, $out) = $t->test_conf;
    isnt($rc, 0, 'a key file with a broken key is refused');
    like($out, qr/gdrive_google_service_account.*"private_key" is not a PEM private key/,
         'naming the directive and the field') or diag $out;
    unlike($out, qr/AAAA/, 'never quoting the key');
}

# --- a worker with a service account ------------------------------------------

my $key = key_file('key.json');
my $topic = unique_name('satopic');
my $int = unique_name('int-sa');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int", integration_id => $int });

my $t = GDrive::Test->new(workers => 2, http => <<"EOF");
    gdrive_zone gdrive 8m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_retry attempts=2 base=50ms max=100ms;
    gdrive_google_service_account $key;
    gdrive_s3_prefix $topic/;
    server { listen 127.0.0.1:%%PORT%%; location = /status { gdrive_status; } }
EOF
$t->run;

my $n = 0;
sub trigger {
    my ($key, %f) = @_;
    my $id = $f{trigger_id} //= sprintf '%s-%03d', $run, ++$n;
    $f{integration_id} //= $int;
    kafka_produce_lines($topic, [$key // $f{integration_id}, $JSON->encode(\%f)]);
    return $id;
}

sub tokens {
    my ($since, $subject) = @_;
    my $r = emulator(GET => "/requests?endpoint=token&since=$since");
    return grep { ($_->{integration} // '') eq "sa:$email"
                  && ($_->{subject} // '') eq ($subject // '') } @{ $r->{requests} };
}

my $f = drive_file(name => 'alice.txt', size => 100);
my $since = int(time * 1000);
my $o = job_outcome($topic, trigger(undef, action => 'sync_file', file_id => $f->{id},
                                    subject => $alice), 60);
is($o->{result}{status}, 'uploaded', 'a file synced as alice') or diag explain $o;
my @tok = tokens($since, $alice);
is(scalar @tok, 1, 'one token request, for alice');
is($tok[0]{status}, 200, 'which Google answered');
my $r = emulator(GET => "/requests?endpoint=files.media&since=$since");
is((grep { ($_->{subject} // '') eq $alice } @{ $r->{requests} }), 1,
   'the download went with alice\'s token');

# one token for bob, however many jobs and workers need it at once: keyed
# to four partitions, the triggers reach both workers
my @files = map { drive_file(name => "bob-$_.txt", size => 50) } 1 .. 12;
$since = int(time * 1000);
my @ids = map { trigger("k$_", action => 'sync_file', file_id => $files[$_]{id}, subject => $bob) }
          0 .. $#files;
my $ok = grep { (job_outcome($topic, $_, 60)->{result}{status} // '') eq 'uploaded' } @ids;
is($ok, 12, 'twelve files synced as bob');
is(scalar(tokens($since, $bob)), 1, 'with one token request between two workers');
is(scalar(tokens($since, $alice)), 0, 'alice\'s token is not bob\'s, nor asked again');

# the control plane names the user
my $int2 = unique_name('int-sa2');
emulator(POST => '/refresh_tokens', { refresh_token => "1//rt-$int2", integration_id => $int2,
                                       subject => $dave });
$since = int(time * 1000);
$o = job_outcome($topic, trigger(undef, integration_id => $int2, action => 'sync_file',
                                 file_id => $f->{id}), 60);
is($o->{result}{status}, 'uploaded', 'a file synced as the control plane\'s user') or diag explain $o;
is(scalar(tokens($since, $dave)), 1, 'with a token for dave');

# an administrator has not granted delegation for carol
$o = job_outcome($topic, trigger(undef, action => 'sync_file', file_id => $f->{id},
                                 subject => $carol), 60);
ok(!$o->{result}, 'no result without delegation');
is($o->{dead}{headers}{'gdrive.error.code'}, 'auth_invalid', 'a permanent failure');
like($o->{dead}{headers}{'gdrive.error.message'} // '', qr/domain-wide delegation/,
     'that says what the administrator must grant');

# the key in the file is no longer the account's (rotated)
key_file('new.json', new_key => JSON::PP::true());
$o = job_outcome($topic, trigger(undef, action => 'sync_file', file_id => $f->{id},
                                 subject => 'eve@example.com'), 60);
is($o->{dead}{headers}{'gdrive.error.code'}, 'auth_invalid', 'a stale key fails permanently');
like($o->{dead}{headers}{'gdrive.error.message'} // '', qr/Invalid JWT Signature/,
     'with Google\'s words');

unlike(join('', $t->error_log), qr/BEGIN PRIVATE KEY|eyJ[A-Za-z0-9_-]{20,}\./,
       'neither the key nor an assertion is logged');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
