#!/usr/bin/perl

# "nginx -t" rejects bad configurations with a message that names the
# directive (or the environment variable) and what is wrong; values fall
# back from the directive to the environment to the default.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test;

sub conf {
    my ($main, $loc) = @_;
    $loc //= 'gdrive_trigger;';
    return <<"EOF2";
    $main
    server {
        listen 127.0.0.1:%%PORT%%;
        location /t { $loc }
    }
EOF2
}

sub nginx_t {
    my ($http, $env) = @_;
    my $t = GDrive::Test->new(clean_env => 1, http => $http, env => $env // {});
    return $t->test_conf;
}

my $base = "gdrive_zone gdrive 4m;\n    gdrive_kafka_brokers 127.0.0.1:9092;";

my ($rc, $out) = nginx_t(conf($base));
is($rc, 0, 'a minimal trigger configuration is accepted') or diag $out;

my $consumer = <<'EOF2';
    gdrive_zone gdrive 4m;
    gdrive_consumer on;
    gdrive_kafka_brokers 127.0.0.1:9092;
    gdrive_google_client_id id;
    gdrive_google_client_secret secret;
    gdrive_google_refresh_token token;
    gdrive_s3_bucket bucket-1;
    gdrive_s3_access_key AK;
    gdrive_s3_secret_key SK;
EOF2

($rc, $out) = nginx_t(conf($consumer, 'gdrive_status;'));
is($rc, 0, 'a complete consumer configuration is accepted') or diag $out;

($rc, $out) = nginx_t(conf("$consumer    gdrive_s3_multipart_threshold 5g;", 'gdrive_status;'));
is($rc, 0, 'one PUT of up to 5g (streamed) is accepted') or diag $out;

# [name, http block, env, expected message]
my @bad = (
    ['flag that is not on/off',
     conf("$base gdrive_consumer maybe;"), {},
     qr/invalid value "maybe" in "gdrive_consumer" directive/],
    ['rate that is not a rate',
     conf("$base gdrive_rate_limit fast;"), {},
     qr/invalid value "fast" in "gdrive_rate_limit" directive: must be a rate/],
    ['output linger beyond what a batch may wait',
     conf("$base gdrive_kafka_output_linger 1m;"), {},
     qr/invalid value "1m" in "gdrive_kafka_output_linger" directive: must be from 0ms to 10000ms/],
    ['burst without a number',
     conf("$base gdrive_rate_limit 10r/s burst=x;"), {},
     qr/"gdrive_rate_limit" directive: burst= must be a number/],
    ['stream buffers smaller than an S3 part',
     conf("$base gdrive_stream_buffers 4 1m;"), {},
     qr/"gdrive_stream_buffers" directive: the buffer size \(one S3 part\) must be from 5m/],
    ['multipart threshold above what one PUT may carry',
     conf("$base gdrive_s3_multipart_threshold 6g;"), {},
     qr/"gdrive_s3_multipart_threshold" 6442450944 is above S3's limit for one PUT \(5g\)/],
    ['streamed PUT with signed payloads',
     conf("$base gdrive_s3_multipart_threshold 64m; gdrive_s3_sign_parts on;"), {},
     qr/"gdrive_s3_multipart_threshold" 67108864 exceeds one "gdrive_stream_buffers" buffer \(8388608\), which needs "gdrive_s3_sign_parts off"/],
    ['unknown librdkafka property',
     conf("$base gdrive_kafka_option no.such.property 1;"), {},
     qr/invalid "gdrive_kafka_option" "no.such.property": .*No such configuration property/],
    ['bad librdkafka value',
     conf("$base gdrive_kafka_option acks maybe;"), {},
     qr/invalid "gdrive_kafka_option" "acks":/],
    ['API URL that is not http(s)',
     conf("$base gdrive_google_api_url ftp://example;"), {},
     qr/invalid value "ftp:\/\/example" in "gdrive_google_api_url" directive: must be an http/],
    ['topic with a bad character',
     conf("$base gdrive_kafka_topic bad/topic;"), {},
     qr/invalid value "bad\/topic" in "gdrive_kafka_topic" directive: only letters/],
    ['bucket with capitals',
     conf("$base gdrive_s3_bucket Bad_Bucket;"), {},
     qr/invalid value "Bad_Bucket" in "gdrive_s3_bucket" directive: a bucket name/],
    ['retry with zero attempts',
     conf("$base gdrive_retry attempts=0;"), {},
     qr/"gdrive_retry" directive: attempts= must be from 1 to 100/],
    ['retry base above max',
     conf("$base gdrive_retry base=10s max=1s;"), {},
     qr/"gdrive_retry": base=10000ms is greater than max=1000ms/],
    ['zone too small',
     conf("gdrive_zone z 16k; gdrive_kafka_brokers 127.0.0.1:9092;"), {},
     qr/zone "z" is too small in "gdrive_zone" directive/],
    ['zone missing',
     conf("gdrive_kafka_brokers 127.0.0.1:9092;"), {},
     qr/"gdrive_zone" is required when a gdrive location/],
    ['brokers missing for a trigger location',
     conf("gdrive_zone z 4m;"), {},
     qr/"gdrive_kafka_brokers" is not set and the environment variable "KAFKA_BOOTSTRAP_SERVERS" is empty, but gdrive_trigger is used/],
    ['broker without a port',
     conf("gdrive_zone z 4m; gdrive_kafka_brokers localhost;"), {},
     qr/invalid value "localhost" in "gdrive_kafka_brokers" directive: expected host:port/],
    ['consumer without an S3 bucket',
     conf($consumer =~ s/gdrive_s3_bucket bucket-1;//r, 'gdrive_status;'), {},
     qr/"gdrive_s3_bucket" is not set and the environment variable "S3_BUCKET_NAME" is empty, but gdrive_consumer is on/],
    ['consumer without Google credentials',
     conf($consumer =~ s/gdrive_google_refresh_token token;//r, 'gdrive_status;'), {},
     qr/"gdrive_google_refresh_token" is not set and the environment variable "GOOGLE_REFRESH_TOKEN" is empty, but gdrive_consumer is on and no control plane is set/],
    ['bad value in an environment variable',
     conf($base), { GDRIVE_API_RATE_LIMIT => 'lots' },
     qr/invalid value "lots" in environment variable "GDRIVE_API_RATE_LIMIT" \(used for "gdrive_rate_limit"\)/],
    ['millisecond variable out of range',
     conf($base), { KAFKA_SESSION_TIMEOUT_MS => '0' },
     qr/environment variable "KAFKA_SESSION_TIMEOUT_MS" \(used for "gdrive_kafka_session_timeout"\): must be from 1ms/],
    ['endpoint that is not a URL',
     conf($base), { S3_ENDPOINT => 'not-a-url' },
     qr/invalid value "not-a-url" in environment variable "S3_ENDPOINT"/],
    ['two gdrive handlers in one location',
     conf($base, 'gdrive_trigger; gdrive_health;'), {},
     qr/"gdrive_health": this location already has a gdrive handler/],
    ['duplicate value directive',
     conf("$base gdrive_kafka_topic a; gdrive_kafka_topic b;"), {},
     qr/"gdrive_kafka_topic" directive is duplicate/],
    ['ca file that does not exist',
     conf("$base gdrive_ca_file /nonexistent/ca.pem;"), {},
     qr/invalid value "\/nonexistent\/ca.pem" in "gdrive_ca_file" directive: no such file/],
    ['batch limit of zero',
     conf("$base gdrive_trigger_max_batch 0;"), {},
     qr/"gdrive_trigger_max_batch" must be between 1 and 100000/],
    ['server-side encryption of an unknown kind',
     conf("$base gdrive_s3_sse aws:fancy;"), {},
     qr/invalid value "aws:fancy" in "gdrive_s3_sse" directive: must be "off", "AES256" or "aws:kms \[key=ARN\]"/],
    ['a KMS key with AES256',
     conf("$base gdrive_s3_sse AES256 key=arn:aws:kms:x;"), {},
     qr/"gdrive_s3_sse" directive: takes no key= with AES256/],
    ['a storage class that is not one',
     conf("$base gdrive_s3_storage_class cold-ish;"), {},
     qr/invalid value "cold-ish" in "gdrive_s3_storage_class" directive: must be an S3 storage class/],
    ['on_delete that is neither keep nor delete',
     conf("$base gdrive_s3_on_delete purge;"), {},
     qr/invalid value "purge" in "gdrive_s3_on_delete" directive: must be "keep" or "delete"/],
    ['a trusted host that is not a host name',
     conf("$base gdrive_google_trusted_hosts *.google.com evil/path;"), {},
     qr/"gdrive_google_trusted_hosts" directive: must be host names/],
    ['a client certificate without its key',
     conf("$consumer    gdrive_control_plane_certificate $FindBin::Bin/01-config.t;", 'gdrive_status;'), {},
     qr/"gdrive_control_plane_certificate" and "gdrive_control_plane_certificate_key" go together/],
    ['a client certificate that does not exist',
     conf("$base gdrive_control_plane_certificate /nonexistent/cert.pem;"), {},
     qr/invalid value "\/nonexistent\/cert.pem" in "gdrive_control_plane_certificate" directive: no such file/],
    ['value directive outside http main',
     conf($base, 'gdrive_trigger; gdrive_kafka_topic x;'), {},
     qr/"gdrive_kafka_topic" directive is not allowed here/],
);

for my $case (@bad) {
    my ($name, $http, $env, $re) = @$case;
    ($rc, $out) = nginx_t($http, $env);
    isnt($rc, 0, "rejected: $name");
    like($out, $re, "message names the setting and the problem: $name");
    unlike($out, qr/\[(alert|crit)\]/, "no alert: $name");
}

($rc, $out) = nginx_t(conf($base), { KAFKA_FETCH_MAX_WAIT_MS => 'x' });
isnt($rc, 0, 'a bad millisecond value is rejected');
like($out, qr/"xms" in environment variable "KAFKA_FETCH_MAX_WAIT_MS"/,
     'the message shows the value with its unit');

# fallbacks: directive, then environment, then default

($rc, $out) = nginx_t(conf("gdrive_zone z 4m;"),
                      { KAFKA_BOOTSTRAP_SERVERS => '127.0.0.1:9092' });
is($rc, 0, 'KAFKA_BOOTSTRAP_SERVERS stands in for gdrive_kafka_brokers')
    or diag $out;

($rc, $out) = nginx_t(conf($base . ' gdrive_rate_limit 5r/s burst=10;'),
                      { GDRIVE_API_RATE_LIMIT => 'lots' });
is($rc, 0, 'a directive beats a bad environment value, which is not read')
    or diag $out;

my %consumer_env = (
    KAFKA_BOOTSTRAP_SERVERS => '127.0.0.1:9092',
    GOOGLE_CLIENT_ID => 'id', GOOGLE_CLIENT_SECRET => 'secret',
    GOOGLE_REFRESH_TOKEN => 'rt', S3_BUCKET_NAME => 'bucket-1',
    AWS_ACCESS_KEY_ID => 'AK', AWS_SECRET_ACCESS_KEY => 'SK',
    GDRIVE_API_RATE_LIMIT => '20', WORKER_MAX_CONCURRENT_CONNECTIONS => '50',
    KAFKA_MAX_POLL_INTERVAL_MS => '600000', GOOGLE_API_DEBUG => 'true',
);
($rc, $out) = nginx_t(conf("gdrive_zone z 4m; gdrive_consumer on;",
                           'gdrive_status;'), \%consumer_env);
is($rc, 0, 'a consumer configured from the environment alone is accepted')
    or diag $out;

($rc, $out) = nginx_t(conf("gdrive_zone z 4m; gdrive_consumer on;"
                           . " gdrive_control_plane_url http://127.0.0.1:1/cp;",
                           'gdrive_status;'),
                      { %consumer_env, GOOGLE_REFRESH_TOKEN => undef });
is($rc, 0, 'with a control plane no default refresh token is needed')
    or diag $out;

($rc, $out) = nginx_t(conf("gdrive_zone z 4m;", 'gdrive_health;'));
is($rc, 0, 'values of parts not in use are not required') or diag $out;

($rc, $out) = nginx_t(conf('', 'return 204;'),
                      { GDRIVE_API_RATE_LIMIT => 'lots' });
is($rc, 0, 'without gdrive directives the environment is not read')
    or diag $out;

done_testing;
