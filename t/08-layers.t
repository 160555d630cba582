#!/usr/bin/perl
# The layer rule of the README's architecture section, checked on the
# objects the build made: every file in src/ is in exactly one layer of the
# README's file table; a file uses (nm: an undefined symbol that another
# object defines) only files of layers below its own, or a file of its own
# layer that the README's "Within a layer" list names; and no file touches
# another file's writable global (a data symbol outside read-only
# sections), so that a global is written only by its owner. The nginx
# module structure is the one exception: nginx itself reads and writes it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(repo_root);

my $root = repo_root();
my $objs = "$root/build/nginx/objs/addon/src";

plan skip_all => "no objects in $objs: run make first"
    unless -d $objs && glob("$objs/*.o");
for my $tool (qw(nm objdump)) {
    plan skip_all => "$tool is missing (binutils)"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

# the README's table: | layer | files | owns |, top to bottom
open my $fh, '<', "$root/README.md" or die "README.md: $!";
my $readme = do { local $/; <$fh> };
close $fh;

my ($table) = $readme =~ /Files in `src\/`.*?\n\n((?:\|[^\n]*\n)+)/s
    or BAIL_OUT('no file table under "Files in `src/`" in the README');

my (%layer, @layers);
for my $row (split /\n/, $table) {
    my @cell = map { s/^\s+|\s+$//gr } split /\|/, $row;
    shift @cell;
    next if $cell[0] eq 'layer' || $cell[0] =~ /^-+$/;
    push @layers, $cell[0];
    for my $f ($cell[1] =~ /`([^`]+)`/g) {
        ok(!exists $layer{$f}, "$f is in one layer only");
        $layer{$f} = $#layers;
    }
}
ok(@layers >= 4, 'the README names the layers: ' . join(', ', @layers));

# "Within a layer": - `a.c` uses `b.c`
my %sideways;
my ($within) = $readme =~ /\nWithin a layer[^\n]*\n\n((?:- [^\n]*\n(?:  [^\n]*\n)*)+)/;
ok(defined $within, 'the README lists the uses within a layer');
for my $item (split /\n(?=- )/, $within // '') {
    my ($from, $to) = $item =~ /^- `([^`]+)` uses `([^`]+)`/ or next;
    $sideways{"$from $to"} = 1;
}

# every source file is in the table, every file of the table exists
my @sources = map { s{.*/}{}r } glob("$root/src/*.c $root/src/*.h");
for my $f (@sources) {
    ok(exists $layer{$f}, "$f is in the README's file table");
}
for my $f (sort keys %layer) {
    ok(-f "$root/src/$f", "the README's $f exists");
}

# what each object defines and uses
my (%defines, %uses, %data, %readonly);
for my $o (glob "$objs/*.o") {
    my $c = ($o =~ s{.*/}{}r) =~ s/\.o$/.c/r;
    for (`nm -P $o`) {
        my ($sym, $type) = split;
        if ($type eq 'U') { $uses{$c}{$sym} = 1; next }
        next unless $type =~ /^[A-Z]$/;
        $defines{$sym} = $c;
        $data{$sym} = 1 if $type =~ /^[BCDGRSV]$/;
    }
    # sections of the data symbols: read-only ones may be shared
    for (`objdump -t $o`) {
        my @f = split;
        next unless @f >= 6 && $f[1] eq 'g';
        my ($section, $sym) = ($f[-3], $f[-1]);
        $readonly{$sym} = 1 if $section =~ /^\.(?:rodata|data\.rel\.ro)/;
    }
}

ok(scalar keys %defines, 'the objects define symbols');

my @bad;
for my $c (sort keys %uses) {
    next unless exists $layer{$c};
    for my $sym (sort keys %{ $uses{$c} }) {
        my $owner = $defines{$sym} // next;    # nginx or a library
        next if $owner eq $c || $sym eq 'ngx_http_gdrive_worker_module';

        if ($data{$sym} && !$readonly{$sym}) {
            push @bad, "$c uses $sym, a writable global of $owner";
        }

        my ($lc, $lo) = ($layer{$c}, $layer{$owner} // -1);
        next if $lo > $lc;                      # a layer below
        next if $lo == $lc && $sideways{"$c $owner"};
        push @bad, "$c ($layers[$lc]) uses $sym of $owner"
                   . ($lo >= 0 ? " ($layers[$lo])" : '');
    }
}

is_deeply(\@bad, [], 'every use goes down a layer, or sideways as the '
                     . 'README allows, and no writable global is shared')
    or diag join "\n", @bad;

# a use the README allows but the code does not make is a stale line
for my $pair (sort keys %sideways) {
    my ($from, $to) = split / /, $pair;
    my $used = grep { ($defines{$_} // '') eq $to } keys %{ $uses{$from} // {} };
    ok($used, "the README's \"$from uses $to\" is true");
}

done_testing;
