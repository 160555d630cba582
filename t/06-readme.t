#!/usr/bin/perl

# The README's configuration reference against the source: every directive
# of the module's directive list has a row, with the context nginx accepts
# it in, and every setting of the settings table shows its environment
# variable and its default.  A directive added to the source without a
# line in the README fails here.
#
# Needs: nothing but the repository.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(repo_root);

my $root = repo_root();

sub slurp {
    open my $fh, '<', "$root/$_[0]" or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}

my $src = slurp('src/ngx_http_gdrive_worker_module.c')
          . slurp('src/ngx_gdrive_conf.c');
my $readme = slurp('README.md');

# the settings table: ngx_gdrive_setting(ID, env, default, ...)
my %setting;
while ($src =~ /^\s*ngx_gdrive_setting\((\w+),\s*(NULL|"[^"]*"),\s*(NULL|"[^"]*")/mg)
{
    my ($id, $env, $def) = ($1, $2, $3);
    s/^"|"$//g for $env, $def;
    $setting{$id} = { env => $env eq 'NULL' ? undef : $env,
                      def => $def eq 'NULL' ? undef : $def };
}
cmp_ok(scalar keys %setting, '>=', 40, 'the settings table is found');

# the directive list: value directives and the others with their contexts
my (%directive, @names);
my ($commands) = $src =~ /ngx_http_gdrive_commands\[\] = \{(.*?)ngx_null_command/s;
ok($commands, 'the directive list is found');

while ($commands =~ /ngx_gdrive_value\("(\w+)",\s*\w+,\s*\w+,\s*(\w+)\)/g) {
    $directive{$1} = { setting => $2, context => ['http'] };
    push @names, $1;
}
while ($commands =~ /\{\s*ngx_string\("(\w+)"\),\s*([A-Z_|0-9]+),/g) {
    my ($name, $flags) = ($1, $2);
    my @ctx;
    push @ctx, 'http' if $flags =~ /NGX_HTTP_MAIN_CONF/;
    push @ctx, 'server' if $flags =~ /NGX_HTTP_SRV_CONF/;
    push @ctx, 'location' if $flags =~ /NGX_HTTP_LOC_CONF/;
    $directive{$name} = { context => \@ctx };
    push @names, $name;
}
my %has = map { $directive{$_}{setting} // () => 1 } @names;
is_deeply([grep { !$has{$_} } sort keys %setting], [],
          'every setting has a directive');

# the README's rows: | `name ...;` | context | ...
my %row;
for (split /\n/, $readme) {
    $row{$1} = $_ if /^\| `(gdrive_\w+)[ ;]/;
}

for my $name (@names) {
    my $row = $row{$name};
    ok($row, "$name has a row in the configuration reference") or next;

    my @cells = map { s/^\s+|\s+$//gr } split /(?<!\\)\|/, $row;
    shift @cells;
    is($cells[1], join(', ', @{ $directive{$name}{context} }),
       "$name: its context is the one nginx accepts");

    my $s = $directive{$name}{setting} or next;
    my $set = $setting{$s};

    if ($set->{env}) {
        is($cells[2] =~ /`(\w+)`/ ? $1 : '', $set->{env},
           "$name: its environment variable is $set->{env}");
    } else {
        unlike($cells[2], qr/`/, "$name: it has no environment variable");
    }

    if (defined $set->{def} && length $set->{def}) {
        like($cells[3], qr/`\Q$set->{def}\E[` ]/,
             "$name: its default is $set->{def}");
    }
}

# nothing in the reference that the source does not have
my @stale = grep { !$directive{$_} } sort keys %row;
is_deeply(\@stale, [], 'the README lists no directive the module lacks');

done_testing;
