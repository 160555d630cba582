#!/usr/bin/perl

# nginx.conf.example is a configuration nginx accepts: "nginx -t" passes
# with the required environment variables set (the module's path and the
# writable paths moved into a directory of the test), and fails naming the
# directive and the variable when a required one is missing.  Every
# directive it uses is one of the module's or nginx's own, and every
# gdrive_* directive it uses is in the README.
#
# Needs: the built module (make) and Debian's nginx.  Nothing is started.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GDrive::Test qw(repo_root module_path nginx_bin);

my $root = repo_root();
ok(-f module_path(), 'the module is built') or BAIL_OUT('run make first');

open my $fh, '<', "$root/nginx.conf.example" or die $!;
my $example = do { local $/; <$fh> };
close $fh;

my $dir = tempdir('gdrive-example-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $conf = $example;
my $module = module_path();

ok($conf =~ s{^load_module /usr/lib/nginx/modules/ngx_http_gdrive_worker_module\.so;}
             {load_module $module;}m,
   'the example loads the module from Debian\'s module directory');
$conf =~ s{/run/nginx\.pid}{$dir/nginx.pid};
$conf =~ s{/var/log/nginx/}{$dir/}g;
my $temp = join '', map { "    ${_}_temp_path $dir/$_;\n" }
                    qw(client_body proxy fastcgi uwsgi scgi);
$conf =~ s/^http \{\n/http {\n$temp/m;
$conf =~ s/^user www-data;/user root root;/m if $> == 0;

my $file = "$dir/nginx.conf";
open $fh, '>', $file or die $!;
print $fh $conf;
close $fh;

my %required = (
    KAFKA_BOOTSTRAP_SERVERS => '127.0.0.1:1',
    CONTROL_PLANE_URL => 'http://127.0.0.1:1',
    S3_BUCKET_NAME => 'gdrive-ingest',
    AWS_ACCESS_KEY_ID => 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY => 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
);

sub nginx_t {
    my (%env) = @_;
    local %ENV = %ENV;
    delete @ENV{@GDrive::Test::MODULE_ENV};
    for (keys %env) {
        if (defined $env{$_}) { $ENV{$_} = $env{$_} } else { delete $ENV{$_} }
    }
    my $out = `${\ nginx_bin()} -t -p $dir/ -c $file 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = nginx_t(%required);
is($rc, 0, 'nginx -t accepts the example with the required variables')
    or diag $out;
unlike($out, qr/\[(warn|emerg|alert)\]/, 'without a warning') or diag $out;
unlike($out, qr/wJalrXUtnFEMI/, 'and prints no secret');

my %single_tenant = (%required, CONTROL_PLANE_URL => undef,
                     GOOGLE_CLIENT_ID => 'client.apps',
                     GOOGLE_CLIENT_SECRET => 'client-secret',
                     GOOGLE_REFRESH_TOKEN => '1//refresh');
($rc, $out) = nginx_t(%single_tenant);
is($rc, 0, 'it accepts a single tenant\'s Google credentials instead')
    or diag $out;

for my $case (
    [ KAFKA_BOOTSTRAP_SERVERS => 'gdrive_kafka_brokers' ],
    [ S3_BUCKET_NAME => 'gdrive_s3_bucket' ],
    [ AWS_ACCESS_KEY_ID => 'gdrive_s3_access_key' ],
    [ AWS_SECRET_ACCESS_KEY => 'gdrive_s3_secret_key' ],
) {
    my ($var, $directive) = @$case;
    ($rc, $out) = nginx_t(%required, $var => undef);
    isnt($rc, 0, "nginx -t fails without $var");
    like($out, qr/"\Q$directive\E" is not set and the environment variable "\Q$var\E" is empty/,
         "naming $directive and $var");
}

($rc, $out) = nginx_t(%required, CONTROL_PLANE_URL => undef);
isnt($rc, 0, 'nginx -t fails with neither a control plane nor Google credentials');
like($out, qr/"gdrive_google_client_id" is not set .*no control plane is set/,
     'and says that one of them is needed');

($rc, $out) = nginx_t(%required, GDRIVE_API_RATE_LIMIT => 'fast');
is($rc, 0, 'a variable whose directive is in the file is not read');

# the admin locations: status, diagnostics and the DLQ tools only on a
# loopback listener; triggers need a secret and are rate limited
my @servers = $example =~ /^    server \{\n(.*?)^    \}\n/msg;
my @admin = grep { /\bgdrive_(?:status|dlq);/ } @servers;
ok(@admin && !(grep { !/^\s*listen 127\.0\.0\.1:\d+;/m } @admin),
   'gdrive_status and gdrive_dlq are served on loopback listeners only');
my ($public) = grep { /\bgdrive_trigger;/ } @servers;
like($public // '', qr/limit_req zone=/, 'triggers are rate limited');
like($public // '', qr/if \(\$trigger_secret_ok = 0\) \{\s*return 401/, 'and need the shared secret');

# every gdrive_* directive of the example is the module's and in the README

open $fh, '<', "$root/README.md" or die $!;
my $readme = do { local $/; <$fh> };
close $fh;

my %used = map { $_ => 1 } $example =~ /\b(gdrive_[a-z0-9_]+)\b/g;
delete $used{gdrive_triggers};                  # a limit_req zone
my @unknown = grep { $readme !~ /`\Q$_\E[ ;`]/ } sort keys %used;
is_deeply(\@unknown, [], 'every gdrive_* directive of the example is in the README');

done_testing;
