#!/usr/bin/perl

# The SigV4 signer against the local S3 server, which verifies every
# signature: t/unit/s3_e2e.c signs PUT, HEAD, GET, DELETE and the
# multipart requests (create, parts, complete, abort) for keys with
# spaces, unicode, '+' and '%', and checks that a wrong secret gets 403.
# Needs: the stack's S3 (build/stack.env or the environment), libcurl.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(repo_root stack_env unique_name);

my $root = repo_root();
my $env = { %{ stack_env() }, %ENV };
my @need = qw(S3_ENDPOINT AWS_REGION S3_BUCKET_NAME AWS_ACCESS_KEY_ID
              AWS_SECRET_ACCESS_KEY);
my @missing = grep { !$env->{$_} } @need;
plan skip_all => "no S3 in the environment (@missing)" if @missing;

my $bin = "$root/build/unit/s3_e2e";
my $out = `make -s -C $root $bin 2>&1`;
is($?, 0, 'the signer check builds') or diag $out;

local @ENV{@need} = @{$env}{@need};
my $prefix = unique_name('sigv4');
my @tap = `ASAN_OPTIONS=detect_leaks=1 $bin '$prefix' 2>&1`;
my $rc = $? >> 8;
my $plan = 0;
for (@tap) {
    chomp;
    if (/^(not )?ok \d+ - (.*)$/) { ok(!$1, $2) }
    elsif (/^1\.\.(\d+)$/)        { $plan = $1 }
    else                          { diag $_ }
}
is($rc, 0, 's3_e2e exits cleanly (no sanitizer report)');
ok($plan > 0, "s3_e2e ran its plan of $plan");

done_testing;
