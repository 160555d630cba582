#!/usr/bin/perl

# gdrive_status: the HTML page (escaped, self-refreshing, loaded in
# headless Chromium without console errors), the JSON for tools with
# in-flight jobs and recent errors, and the diagnostics bundle without
# any of the secrets the configuration holds.
# Needs: the local stack (make stack), chromium (Debian package chromium)
# for the browser part.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(kafka_produce kafka_produce_lines kafka_consume
                    unique_name wait_until emulator consumer_conf);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('page');
my $int = unique_name('int-page');

# credentials from the control plane: a delay of one integration's
# requests keeps its job in flight long enough to be seen
my $t = GDrive::Test->new(workers => 2, http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
        location = /broken {
            default_type text/html;
            return 200 '<!DOCTYPE html><p>x</p><script>console.error("calibration")</script>';
        }
    }
EOF

kafka_produce_lines($topic, ['warm', '{"trigger_id":"warm-up","integration_id":"w","action":"sync_changes"}']);
$t->run;

# (an integration the control plane does not know ends in the DLQ)
ok(wait_until('warm-up', 60, sub {
       my $n = 0;
       $n += $_->{results} + $_->{dead_letters}
           for @{ $t->http_json(GET => '/status')->{json}{workers} // [] };
       $n;
   }), 'the consumer works');

# an invalid trigger id that would be markup if it were not escaped
kafka_produce($topic, ['x', '{"trigger_id":"<b>bold</b>","integration_id":"x","action":"sync_changes"}']);

emulator(POST => '/faults', { endpoint => '*', integration => $int,
                              delay_ms => 6000, times => 1 });
my $slow = "slow-$$";
kafka_produce($topic, [$int, qq({"trigger_id":"$slow","integration_id":"$int","action":"sync_changes"})]);

# --- JSON ---------------------------------------------------------------------------

my $job = wait_until('job in flight', 20, sub {
    my $st = $t->http_json(GET => '/status?format=json');
    my ($j) = grep { $_->{trigger_id} eq $slow }
              map { @{ $_->{jobs} // [] } } @{ $st->{json}{workers} // [] };
    $j;
});
ok($job, '?format=json shows the slow job in flight by its trigger id');
is($job && $job->{stage}, 'token', 'in its stage');
ok($job && $job->{age_seconds} >= 0 && defined $job->{partition}
   && defined $job->{offset}, 'with its age, partition and offset');

my $st = $t->http_json(GET => '/status', headers => { accept => 'application/json' });
like($st->{headers}{'content-type'}, qr{^application/json},
     'Accept: application/json gives JSON too');
is(scalar @{ $st->{json}{workers} // [] }, 2, 'with both workers');
ok(exists $st->{json}{caches}{token}{hits}, 'the caches');
ok(exists $st->{json}{rate_limits}{global_per_second}, 'the rate limits');

my $err = wait_until('error listed', 20, sub {
    my ($e) = grep { $_->{code} eq 'invalid_message' }
              @{ $t->http_json(GET => '/status?format=json')->{json}{errors} // [] };
    $e;
});
ok($err, 'the poison message is among the recent errors');
like($err->{time} // '', qr/^\d{4}-\d\d-\d\dT/, 'with its time');

# --- HTML ---------------------------------------------------------------------------

my $page = $t->http(GET => '/status', headers => { accept => 'text/html' });
is($page->{status}, 200, 'the page answers');
like($page->{headers}{'content-type'}, qr{^text/html}, 'as HTML');
like($page->{content}, qr/<meta http-equiv="refresh" content="\d+">/,
     'it refreshes itself');
unlike($page->{content}, qr/<script/i, 'it needs no script');
unlike($page->{content}, qr/<b>bold/, 'message content is escaped');
like($page->{content}, qr/invalid_message/, 'it lists the recent error');
for my $w (@{ $st->{json}{workers} }) {
    like($page->{content}, qr/>$w->{pid}</, "it shows worker pid $w->{pid}");
}
like($page->{content}, qr/Partitions.*Jobs in flight.*Caches.*Rate limits.*Recent errors/s,
     'it has every section');

# --- Chromium -----------------------------------------------------------------------

my ($chromium) = grep { -x } map { "$_/chromium" } split /:/, $ENV{PATH};

SKIP: {
    skip 'chromium is not installed (Debian package chromium)', 5
        unless $chromium;

    # console messages come on stderr as "...:CONSOLE...] "text", source: ..."
    my $browse = sub {
        my ($url, $png) = @_;
        my $log = $t->dir . '/chromium.log';
        system("timeout 90 $chromium --headless --no-sandbox --disable-gpu "
               . "--hide-scrollbars --window-size=1200,1000 "
               . "--user-data-dir=" . $t->dir . "/chromium-profile "
               . "--virtual-time-budget=3000 --enable-logging=stderr --v=0 "
               . "--screenshot=$png '$url' >/dev/null 2>$log");
        open my $fh, '<', $log or return ();
        return grep { /:CONSOLE/ } <$fh>;
    };

    my @console = $browse->($t->url('/broken'), $t->dir . '/broken.png');
    ok(scalar(grep { /calibration/ } @console),
       'a console error of a page is seen (the check can fail)');

    my $png = $t->dir . '/status.png';
    @console = $browse->($t->url('/status'), $png);
    ok(-s $png, 'Chromium takes a screenshot of the status page');
    open my $fh, '<', $png;
    binmode $fh;
    read $fh, my $magic, 8;
    is($magic, "\x89PNG\r\n\x1a\n", 'a PNG image');
    cmp_ok(-s $png, '>', 10000, 'of a page with content');
    is(scalar @console, 0, 'without console messages')
        or diag @console;
    if ($ENV{TEST_KEEP}) { diag "screenshot: $png" }
}

$t->stop;

# --- diagnostics ---------------------------------------------------------------------

my %secret = (client => 'cs-Secret-7781', refresh => 'rt-Secret-9912',
              s3 => 's3-Secret-4455', kafka => 'kp-Secret-3301',
              sslkey => 'kk-Secret-2207', cpuser => 'cp-Secret-5566',
              query => 'q-Secret-0042');

my $d = GDrive::Test->new(env => { AWS_SECRET_ACCESS_KEY => $secret{s3},
                                   GOOGLE_CLIENT_SECRET => undef },
                          http => <<"EOF");
    gdrive_zone gdrive 1m;
    gdrive_kafka_topic $topic;
    gdrive_google_client_secret $secret{client};
    gdrive_google_refresh_token $secret{refresh};
    gdrive_kafka_option sasl.password $secret{kafka};
    gdrive_kafka_option ssl.key.password $secret{sslkey};
    gdrive_control_plane_url "http://ops:$secret{cpuser}\@127.0.0.1:19100/cp?token=$secret{query}";

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { gdrive_status; }
        location = /triggers { gdrive_trigger; }
    }
EOF
$d->run;

my $res = $d->http(GET => '/status?diagnostics');
is($res->{status}, 200, 'the diagnostics bundle answers');
my $diag = eval { GDrive::Test::json()->decode($res->{content}) } // {};
for my $lib (qw(nginx module librdkafka libcurl libcurl_ssl jansson openssl)) {
    like($diag->{versions}{$lib} // '', qr/\d/, "it gives the version of $lib");
}
is($diag->{versions}{module}, '0.2.0', 'the module\'s version is its own');
is($diag->{configuration}{gdrive_kafka_topic}{from}, 'directive',
   'a setting from a directive says so');
is($diag->{configuration}{gdrive_kafka_brokers}{from}, 'environment',
   'one from the environment says so');
is($diag->{configuration}{gdrive_kafka_brokers}{env}, 'KAFKA_BOOTSTRAP_SERVERS',
   'and names its variable');
is($diag->{configuration}{gdrive_max_inflight}{from}, 'default',
   'a default says so');
is($diag->{configuration}{gdrive_max_inflight}{value}, '16', 'with its value');
is($diag->{configuration}{gdrive_google_client_secret}{value}, '(redacted)',
   'the client secret is redacted');
is($diag->{configuration}{gdrive_s3_secret_key}{value}, '(redacted)',
   'the S3 secret key from the environment is redacted');
is($diag->{kafka_options}{'sasl.password'}, '(redacted)',
   'a Kafka password option is redacted');
like($diag->{configuration}{gdrive_control_plane_url}{value} // '',
     qr{^http://\(redacted\)\@127\.0\.0\.1:19100/cp\?\(redacted\)$},
     'the credentials and query of a URL are redacted');
ok(ref $diag->{recent_errors} eq 'ARRAY', 'recent errors are included');

for my $k (sort keys %secret) {
    unlike($res->{content}, qr/\Q$secret{$k}\E/, "the $k secret is not in it");
}

my $json = $d->http_json(GET => '/status');
my $html = $d->http(GET => '/status');
my $log = $d->error_log;
for my $k (sort keys %secret) {
    ok(index($json->{content} . $html->{content} . $log, $secret{$k}) < 0,
       "nor in the status page or the error log: $k");
}

done_testing;
