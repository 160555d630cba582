#!/usr/bin/perl

# docs/operations.md against the source: every metric it names is one
# gdrive_metrics writes (src/ngx_http_gdrive_prometheus.c renders the tables
# of src/ngx_gdrive_metrics.c), with label values from the metrics' fixed
# lists; every other gdrive_* name is a directive of the module; every
# upper-case environment variable is one of the settings table; every
# error code of its table is one the module reports, and every code the
# module reports has a row; every log line it quotes is a format string
# of the source, or a line such a format writes; every snake_case name
# in its inline code is a string of the source.  A knob, metric, code or
# log line renamed or removed in the source fails here.
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

my $doc = slurp('docs/operations.md');
my $module = slurp('src/ngx_http_gdrive_worker_module.c')
             . slurp('src/ngx_gdrive_conf.c');
my $prometheus = slurp('src/ngx_http_gdrive_prometheus.c');
my $metrics = slurp('src/ngx_gdrive_metrics.c');

opendir my $dh, "$root/src" or die "src: $!";
my @sources = sort grep { /\.[ch]$/ } readdir $dh;
closedir $dh;
my $all = join "\n", map { slurp("src/$_") } @sources;

# --- what the source has ---------------------------------------------------

my %env;
while ($module =~ /^\s*ngx_gdrive_setting\(\w+,\s*"([A-Z0-9_]+)"/mg) {
    $env{$1} = 1;
}
cmp_ok(scalar keys %env, '>=', 30, 'the settings table\'s variables are found');

my ($commands) = $module =~ /ngx_http_gdrive_commands\[\] = \{(.*?)ngx_null_command/s;
my %directive = map { $_ => 1 } ($commands // '') =~ /"(gdrive_\w+)"/g;
cmp_ok(scalar keys %directive, '>=', 60, 'the directive list is found');

# metric names: the string literals of the metrics location's file
my ($render) = $prometheus =~ /(\nngx_http_gdrive_metrics_handler\(.*?\n}\n)/s
    && $prometheus;
ok($render, 'the metrics handler is found');
my %metric;
while (($render // '') =~ /"[^"\n]*?\b(gdrive_[a-z0-9_]+)/g) {
    $metric{$1} = 1 unless $directive{$1};
}
for my $h (($render // '') =~ /"(gdrive_\w+)",\s*"histogram"/g) {
    $metric{"${h}_$_"} = 1 for qw(bucket sum count);
}
cmp_ok(scalar keys %metric, '>=', 20, 'the metric names are found');

# the label values of the fixed lists
sub list_of {
    my ($text, $name) = @_;
    my ($body) = $text =~ /\b\Q$name\E\[[^\]]*\]\s*=\s*\{(.*?)\};/s;
    return map { $_ => 1 } ($body // '') =~ /"([^"]+)"/g;
}

my %label = (
    code => { list_of($metrics, 'ngx_gdrive_metric_codes') },
    outcome => { list_of($metrics, 'ngx_gdrive_metric_outcomes') },
    endpoint => { list_of($metrics, 'ngx_gdrive_metric_endpoints') },
    op => { list_of($metrics, 'ngx_gdrive_metric_s3_ops') },
    cache => { list_of($metrics, 'ngx_gdrive_metric_caches') },
    result => { list_of($metrics, 'ngx_gdrive_metric_refresh') },
    scope => { list_of($render // '', 'scopes') },
    probe => { list_of($render // '', 'probes') },
);
for (sort keys %label) {
    ok(scalar keys %{ $label{$_} }, "the values of the label \"$_\" are found");
}
my %codes = %{ $label{code} };
delete @codes{qw(none other)};

# every word of every string literal, adjacent literals joined
(my $joined = $all) =~ s/"\s*\n\s*"//g;
my @literals = $joined =~ /"((?:[^"\\\n]|\\.)*)"/g;
s/\\"/"/g for @literals;
my %word = map { $_ => 1 } map { /[A-Za-z0-9_.]+/g } @literals;

# --- the document ------------------------------------------------------------

(my $prose = $doc) =~ s/^```.*?^```//msg;
my @spans = $prose =~ /`([^`\n]+)`/g;

# gdrive_* names: metrics or directives
my %named = map { $_ => 1 } $doc =~ /\b(gdrive_[a-z0-9_]+)/g;
my @unknown = grep { !$metric{$_} && !$directive{$_} } sort keys %named;
is_deeply(\@unknown, [], 'every gdrive_* name is a metric or a directive');

my @unmentioned = grep { !/_(bucket|sum|count)$/ && !$named{$_} }
                  sort keys %metric;
is_deeply(\@unmentioned, [], 'every metric of gdrive_metrics is in the guide');

# label values in metric selectors
for my $l (sort keys %label) {
    my %seen = map { $_ => 1 } $doc =~ /\b$l="([^"]+)"/g;
    my @bad = grep { !$label{$l}{$_} } sort keys %seen;
    is_deeply(\@bad, [], "every value of the label \"$l\" is the module's");
}

# environment variables
my %guide_only = (LOG_LEVEL => 1, REFRESH_TOKEN => 1);
my %elsewhere = (NGINX_WORKER_PROCESSES => 't/docker/entrypoint.sh');
my %vars = map { $_ => 1 } $doc =~ /\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g;
my @bad_vars = grep { !$env{$_} && !$guide_only{$_} && !$elsewhere{$_} }
               sort keys %vars;
is_deeply(\@bad_vars, [], 'every environment variable is in the settings table');
for my $v (sort keys %elsewhere) {
    next unless $vars{$v};
    like(slurp($elsewhere{$v}), qr/\b\Q$v\E\b/, "$v is read by $elsewhere{$v}");
}
for my $v (sort keys %guide_only) {
    next unless $vars{$v};
    ok(!$env{$v}, "the guide's $v is not one of the module's variables");
    like($doc, qr/guide's \Q$v\E\b/, "and the text says it is the guide's");
}

# the error code table, both ways
my ($table) = $doc =~ /^## Error codes\n(.*?)^## /ms;
ok($table, 'the error code table is found');
my %row = map { $_ => 1 } ($table // '') =~ /^\| `([a-z0-9_]+)` \|/mg;
is_deeply([grep { !$codes{$_} } sort keys %row], [],
          'every code of the table is one the module reports');
is_deeply([grep { !$row{$_} } sort keys %codes], [],
          'every code the module reports has a row');

# log lines: a format string of the source, or a line one writes
sub format_re {
    my ($f) = @_;
    my @parts = split /(%[-0-9.*]*(?:u[izAALD]|[A-Za-z]))/, $f;
    return join '', map { /^%/ ? '.*?' : quotemeta } @parts;
}

my @formats = grep { /^gdrive: ./ } @literals;
my %seen_line;
my @lines = grep { /^gdrive: \S/ && !$seen_line{$_}++ } @spans;
cmp_ok(scalar @lines, '>=', 20, 'the guide quotes log lines');

for my $line (@lines) {
    my $ok;
    if ($line =~ /%/) {
        $ok = grep { $_ eq $line } @formats;
    } else {
        $ok = grep { my $re = format_re($_); $line =~ /^$re/ } @formats;
    }
    ok($ok, "the log line \"$line\" is the module's");
}

# snake_case names in inline code: strings of the source, nginx's own
# directives, or names of the guide's Python worker said to be the guide's
my %nginx = map { $_ => 1 }
            qw(worker_processes error_log client_max_body_size auth_request);
my %guide = map { $_ => 1 }
            qw(analyze_dlq_message enable_cleanup_closed fix_message lru_cache
               process_with_timing messages_processed_total
               processing_duration_seconds);
my %snake = map { $_ => 1 }
            grep { /^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$/ } @spans;
my @invented = grep { !$word{$_} && !$directive{$_} && !$metric{$_}
                      && !$nginx{$_} && !$guide{$_} } sort keys %snake;
is_deeply(\@invented, [], 'every snake_case name in inline code is the source\'s');

for my $name (sort grep { $snake{$_} } keys %guide) {
    ok(!$word{$name}, "the guide's $name is not a name of the module");
    like($prose, qr/guide's[^.]{0,120}`\Q$name\E`/s,
         "and the text says it is the guide's");
}

done_testing;
