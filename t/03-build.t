#!/usr/bin/perl

# The addon script: it builds the module in a tree configured the way an
# upstream release tarball is (./configure --with-compat, default flags),
# and stops with a clear message when a library is missing.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GDrive::Test qw(repo_root);

my $src = $ENV{NGX_SRC} // '/usr/share/nginx/src';
plan skip_all => "no nginx source tree in $src" unless -x "$src/configure";

my $root = repo_root();
my $dir = tempdir(CLEANUP => 1);
system('cp', '-r', "$src/.", $dir) == 0 or BAIL_OUT("copy $src: $?");

my $out = `cd $dir && ./configure --with-compat --add-dynamic-module=$root 2>&1`;
is($?, 0, 'configure with default flags and --with-compat accepts the addon')
    or diag $out;
like($out, qr/gdrive worker: found rdkafka/, 'config reports librdkafka');

$out = `cd $dir && make -s -j2 -f objs/Makefile modules 2>&1`;
is($?, 0, 'the module builds (warnings are errors)') or diag $out;
ok(-f "$dir/objs/ngx_http_gdrive_worker_module.so", 'and is a shared object');

# pkg-config that finds nothing: the message names the library and package
my $empty = tempdir(CLEANUP => 1);
$out = `cd $dir && PKG_CONFIG_LIBDIR=$empty PKG_CONFIG_PATH=$empty ./configure --with-compat --add-dynamic-module=$root 2>&1`;
isnt($?, 0, 'configure fails without the libraries');
like($out, qr/needs rdkafka \(Debian package librdkafka-dev\)/,
     'and names the missing library and its package');

done_testing;
