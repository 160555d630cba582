#!/usr/bin/perl

# libFuzzer on the trigger validator for a bounded time (FUZZ_SECONDS,
# 30 by default here): any crash, leak or sanitizer report fails the test.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(repo_root);

plan skip_all => 'clang is not installed'
    unless grep { -x "$_/clang" } split /:/, $ENV{PATH};

my $root = repo_root();
my $seconds = $ENV{FUZZ_SECONDS} // 30;
my $out = `make -s -C $root fuzz FUZZ_SECONDS=$seconds 2>&1`;
my $rc = $? >> 8;
is($rc, 0, "the validator survives $seconds s of fuzzing")
    or diag join "\n", grep { /ERROR|SUMMARY|crash|leak|#0|#1|#2|#3/ }
                       split /\n/, $out;
like($out, qr/stat::number_of_executed_units:\s*\d+/, 'the fuzzer ran');

done_testing;
