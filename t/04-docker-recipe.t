#!/usr/bin/perl

# The container recipe without a container engine: the Dockerfile names
# files that exist and runs the build script; the build script builds and
# installs the module into a DESTDIR as Debian lays modules out; the
# image's nginx.conf, with that module and the image's entrypoint, passes
# "nginx -t" with the required variables and names a missing one; and
# nginx runs it as an unprivileged user, answers the image's health check
# and stops gracefully on the image's stop signal.
#
# Needs: Debian's nginx and nginx-dev and the module's -dev packages (the
# build script installs missing ones only as root), setpriv (util-linux).
# Kafka is pointed at a closed port: no shared service is touched.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);
use GDrive::Test qw(repo_root nginx_bin free_port wait_until);

my $root = repo_root();
my $nginx = nginx_bin();

plan skip_all => "no $nginx" unless -x $nginx;

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return scalar <$fh>;
}

# --- the Dockerfile ----------------------------------------------------------

my $df = slurp("$root/Dockerfile");
$df =~ s/\\\n/ /g;                                  # join continued lines
my @lines = grep { /\S/ && !/^\s*#/ } split /\n/, $df;

my (@from, @copy, @run, %inst);
for (@lines) {
    my ($cmd, $rest) = /^\s*(\w+)\s+(.*?)\s*$/ or next;
    $cmd = uc $cmd;
    push @from, $rest if $cmd eq 'FROM';
    push @run, $rest if $cmd eq 'RUN';
    $inst{$cmd} = $rest;
    if ($cmd eq 'COPY') {
        my @a = split ' ', $rest;
        my $from = grep { /^--from=/ } @a;
        @a = grep { !/^--/ } @a;
        push @copy, { from => $from, src => [ @a[0 .. $#a - 1] ],
                      dst => $a[-1] };
    }
}

is(scalar @from, 2, 'the Dockerfile has two stages');
like($from[0], qr/^debian:\S+\s+AS\s+build$/i, 'the first builds');
like($from[1], qr/^debian:\S*-slim$/, 'the second is a slim Debian');
like($df, qr/^ARG DEBIAN_RELEASE=bookworm$/m, 'of Debian bookworm');

my @missing = map { "$_" } grep { !-e "$root/$_" }
              map { @{ $_->{src} } } grep { !$_->{from} } @copy;
is_deeply(\@missing, [], 'every file the Dockerfile copies exists');

ok((grep { m{\bt/docker/build-module\.sh /out\b} } @run),
   'the build stage runs the build script');
ok((grep { !$_->{from} && "@{ $_->{src} }" eq 't/docker/build-module.sh' }
    @copy), 'after copying it in');
ok((grep { $_->{from} && $_->{dst} eq '/' } @copy),
   'the runtime stage takes what the script installed');

my ($image_conf) = map { $_->{src}[0] }
                   grep { $_->{dst} eq '/etc/nginx/nginx.conf' } @copy;
is($image_conf, 't/docker/nginx.conf', 'the image uses t/docker/nginx.conf');

my ($apt) = grep { /apt-get install/ } @run[1 .. $#run];
my %pkgs = map { $_ => 1 } grep { /^[a-z0-9][a-z0-9.+-]+$/ && $_ ne 'install' }
           split ' ', (($apt // '') =~ /--no-install-recommends\s+([^;]*)/)[0]
                      // '';
is_deeply([sort keys %pkgs],
          [sort qw(nginx librdkafka1 libcurl4 libjansson4 ca-certificates)],
          'the runtime stage installs only runtime packages');

my %dst = map { $_->{dst} => $_->{src}[0] } grep { !$_->{from} } @copy;
my ($entry) = ($inst{ENTRYPOINT} // '') =~ /\["([^"]+)"/;
is($dst{$entry // ''}, 't/docker/entrypoint.sh',
   'the entrypoint is t/docker/entrypoint.sh');
my ($hc) = ($inst{HEALTHCHECK} // '') =~ /CMD \["([^"]+)"/;
is($dst{$hc // ''}, 't/docker/healthcheck.sh',
   'the health check is t/docker/healthcheck.sh');
like($inst{USER} // '', qr/^[1-9]\d*(:\d+)?$/, 'the image runs as a non-root uid');
is($inst{STOPSIGNAL}, 'SIGQUIT', 'and stops gracefully');
is($inst{EXPOSE}, '8080', 'exposing 8080');

my $conf = slurp("$root/t/docker/nginx.conf");
like($conf, qr/^\s*listen 8080;/m, 'where the image configuration listens');
my ($ops) = $conf =~ /listen 127\.0\.0\.1:8081;(.*?)^    \}/ms;
like($ops // '', qr/gdrive_status;.*gdrive_dlq;/s, 'status and DLQ tools on a loopback listener');
my ($pub) = $conf =~ /listen 8080;(.*?)^    \}/ms;
unlike($pub // '', qr/gdrive_(?:status|dlq);/, 'and not on the public one');
unlike($conf, qr/^\s*(user|worker_processes)\b/m,
       'the configuration leaves user and worker_processes alone');
like($conf, qr{^include /etc/nginx/modules-enabled/\*\.conf;}m,
     'and loads modules the Debian way');

# --- the build script --------------------------------------------------------

my @dev = qw(nginx-dev librdkafka-dev libcurl4-openssl-dev libjansson-dev
             libssl-dev libpcre2-dev zlib1g-dev pkg-config gcc make dpkg-dev);
my @absent = grep { `dpkg-query -W -f='\${Status}' $_ 2>/dev/null`
                    !~ /ok installed/ } @dev;
if (@absent && $> != 0) {
    diag "missing @absent and not root: build script not run";
    done_testing;
    exit;
}

my $tmp = tempdir('gdrive-docker-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_KEEP});
my $dest = "$tmp/dest";
my $out = `BUILD_DIR=$tmp/build bash $root/t/docker/build-module.sh $dest 2>&1`;
is($?, 0, 'the build script builds the module') or diag $out;
unlike($out, qr/installing:/, 'without installing anything that is there')
    unless @absent;

my $so = "$dest/usr/lib/nginx/modules/ngx_http_gdrive_worker_module.so";
ok(-f $so, 'and installs it into Debian\'s module directory');
is(slurp("$dest/usr/share/nginx/modules-available/mod-http-gdrive-worker.conf"),
   "load_module modules/ngx_http_gdrive_worker_module.so;\n",
   'with a load_module snippet');
is(readlink("$dest/etc/nginx/modules-enabled/50-mod-http-gdrive-worker.conf"),
   '/usr/share/nginx/modules-available/mod-http-gdrive-worker.conf',
   'enabled by a link in modules-enabled');
like(`readelf -d $so 2>&1`, qr/BIND_NOW/, 'linked with Debian\'s hardening flags');

# --- the image's configuration -----------------------------------------------

my $run = "$tmp/run";
mkdir $run or die;
my $port = free_port();
(my $c = $conf) =~ s{/tmp/}{$run/}g;
$c =~ s{^include /etc/nginx/modules-enabled/\*\.conf;}{load_module $so;}m;
$c =~ s/listen 8080;/listen 127.0.0.1:$port;/;
my $admin_port = free_port();
$c =~ s/listen 127\.0\.0\.1:8081;/listen 127.0.0.1:$admin_port;/;
my $cfile = "$tmp/nginx.conf";
open my $fh, '>', $cfile or die;
print $fh $c;
close $fh;

my %required = (
    KAFKA_BOOTSTRAP_SERVERS => '127.0.0.1:1',
    GOOGLE_CLIENT_ID => 'client', GOOGLE_CLIENT_SECRET => 'secret',
    GOOGLE_REFRESH_TOKEN => 'refresh',
    S3_BUCKET_NAME => 'bucket', AWS_ACCESS_KEY_ID => 'id',
    AWS_SECRET_ACCESS_KEY => 'key',
);

sub with_env {
    my ($env, $cmd) = @_;
    local %ENV = %ENV;
    delete @ENV{@GDrive::Test::MODULE_ENV};
    @ENV{keys %$env} = values %$env;
    my $o = `$cmd 2>&1`;
    return ($? >> 8, $o);
}

my $entrypoint = "$root/t/docker/entrypoint.sh";
my ($rc, $o) = with_env({ %required, NGINX_WORKER_PROCESSES => 2 },
                        "sh $entrypoint -t -c $cfile");
is($rc, 0, 'nginx -t accepts the image configuration through the entrypoint')
    or diag $o;

my %no_bucket = %required;
delete $no_bucket{S3_BUCKET_NAME};
($rc, $o) = with_env(\%no_bucket, "sh $entrypoint -t -c $cfile");
isnt($rc, 0, 'and refuses it without S3_BUCKET_NAME');
like($o, qr/"gdrive_s3_bucket" is not set and the environment variable "S3_BUCKET_NAME" is empty/,
     'naming the directive and the variable');

($rc, $o) = with_env({ %required, NGINX_WORKER_PROCESSES => 'many' },
                     "sh $entrypoint -t -c $cfile");
is($rc, 2, 'the entrypoint refuses a worker count that is not a number');
like($o, qr/NGINX_WORKER_PROCESSES must be a number/, 'and says why');

# --- run as an unprivileged user ---------------------------------------------

SKIP: {
    skip 'not root: cannot switch to an unprivileged user', 6 if $> != 0;
    skip 'no setpriv', 6 if system('command -v setpriv >/dev/null') != 0;

    # what "nginx -t" as root left behind (an empty pid file) goes
    system('rm', '-rf', $run) == 0 && mkdir $run or die "$run: $!";
    chmod 0755, $tmp, $dest;
    chown 65534, 65534, $run;

    my $pid = fork // die;
    if ($pid == 0) {
        %ENV = (%ENV, %required, NGINX_WORKER_PROCESSES => 1);
        open STDOUT, '>', "/dev/null";
        open STDERR, '>', "$tmp/stderr.log";
        exec 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
             'sh', $entrypoint, '-c', $cfile;
        exit 127;
    }

    my $hc = "$root/t/docker/healthcheck.sh";
    ok(wait_until('health', 20, sub { system("bash $hc $port") == 0 }),
       'the health check passes once nginx runs as nobody');

    my @users = map { (split ' ')[0] }
                `ps -o uid=,args= --ppid $pid 2>/dev/null`;
    ok(@users && !grep({ $_ != 65534 } @users),
       'its worker processes run as that user too');

    is(system("bash $hc $port /no-such-location"), 256,
       'the health check fails on another answer than 200');

    kill 'QUIT', $pid;
    my $gone = wait_until('exit', 40,
                          sub { waitpid($pid, WNOHANG) == $pid });
    ok($gone, 'SIGQUIT stops nginx');
    is($? >> 8, 0, 'with exit status 0') if $gone;
    kill 'KILL', $pid unless $gone;
    waitpid($pid, 0) unless $gone;

    isnt(system("bash $hc $port"), 0, 'and the health check fails after it');

    my $log = slurp("$tmp/stderr.log");
    unlike($log, qr/\[emerg\]|Permission denied/,
           'nothing in the error log says a path was not writable');
}

done_testing;
