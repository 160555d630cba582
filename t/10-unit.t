#!/usr/bin/perl

# The C unit tests (t/unit/test_*.c) print TAP of their own: build them
# under ASan/UBSan and pass their output through as subtests.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(repo_root);

my $root = repo_root();
my $out = `make -s -C $root unit 2>&1`;
is($?, 0, 'the unit tests build') or diag $out;

for my $src (glob "$root/t/unit/test_*.c") {
    my ($name) = $src =~ m{/(test_\w+)\.c$};
    my $bin = "$root/build/unit/$name";
    subtest $name => sub {
        my @tap = `ASAN_OPTIONS=detect_leaks=1 $bin 2>&1`;
        my $rc = $? >> 8;
        my $plan = 0;
        for (@tap) {
            chomp;
            if (/^(not )?ok \d+ - (.*)$/) { ok(!$1, $2) }
            elsif (/^1\.\.(\d+)$/)        { $plan = $1 }
            else                          { diag $_ }
        }
        is($rc, 0, "$name exits cleanly (no sanitizer report)");
        ok($plan > 0, "$name ran its plan of $plan");
    };
}

done_testing;
