#!/usr/bin/perl
# deploy/kubernetes: the manifests pass yamllint and the Kubernetes and
# KEDA API schemas (t/deploy/validate.mjs), the ConfigMap's nginx.conf
# passes "nginx -t" with the built module, and the manifests agree with
# each other and with the configuration: the grace period exceeds
# gdrive_shutdown_timeout, the probes ask gdrive_health on the listened
# port, the selectors find the pods, the Secret the pods read is the one
# of the example, and pods × worker processes at the most stays within
# the trigger topic's partitions.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GDrive::Test qw(repo_root module_path nginx_bin json);

my $root = repo_root();
my $dir = "$root/deploy/kubernetes";
my @files = sort glob "$dir/*.yaml";

ok(@files >= 6, 'deploy/kubernetes has its manifests');

# --- yamllint (Debian's) -----------------------------------------------------

SKIP: {
    skip 'yamllint is missing (make deps)', 1
        unless grep { -x "$_/yamllint" } split /:/, $ENV{PATH};
    my $conf = '{extends: default, rules: {line-length: {max: 100}, '
             . 'document-start: disable, truthy: {check-keys: false}}}';
    my $out = `yamllint -f parsable -d '$conf' @files 2>&1`;
    is($?, 0, 'yamllint finds nothing') or diag $out;
}

# --- the API schemas ---------------------------------------------------------

my $modules = "$root/t/deploy/node_modules";
unless (-d $modules) {
    # the schemas come with make deps; without them, what ran so far stands
    diag "no $modules: make deps installs it; the schemas are not checked";
    done_testing;
    exit 0;
}

my $out = `node $root/t/deploy/validate.mjs @files 2>&1`;
is($?, 0, 'every manifest validates against its schema') or diag $out;
my %doc;
for (split /\n/, $out) {
    my $d = eval { json()->decode($_) } or next;
    $doc{$d->{kind}} = $d->{object};
}
for my $kind (qw(ConfigMap Deployment Service PodDisruptionBudget
                 ScaledObject Secret Kustomization)) {
    ok($doc{$kind}, "a $kind");
}

my %kust = map { $_ => 1 } @{ $doc{Kustomization}{resources} };
for my $f (map { s{.*/}{}r } @files) {
    next if $f eq 'kustomization.yaml' || $f =~ /example/;
    ok($kust{$f}, "the kustomization lists $f");
}

# --- the configuration -------------------------------------------------------

my $conf = $doc{ConfigMap}{data}{'nginx.conf'};
my $module = module_path();
SKIP: {
    skip "no module at $module: make first", 1 unless -f $module;
    my $tmp = tempdir(CLEANUP => 1);
    # the pod's /tmp is the test's directory (first: the module may be
    # under /tmp itself)
    (my $c = $conf) =~ s{/tmp/}{$tmp/}g;
    $c =~ s{include /etc/nginx/modules-enabled/\*\.conf;}{load_module $module;};
    open my $fh, '>', "$tmp/nginx.conf" or die $!;
    print $fh $c;
    close $fh;
    local %ENV = (%ENV, KAFKA_BOOTSTRAP_SERVERS => '127.0.0.1:1',
                  CONTROL_PLANE_URL => 'http://127.0.0.1:1',
                  S3_BUCKET_NAME => 'payloads', AWS_ACCESS_KEY_ID => 'k',
                  AWS_SECRET_ACCESS_KEY => 's');
    my $t = `${\ nginx_bin()} -t -p $tmp/ -c $tmp/nginx.conf -g 'worker_processes 2;' 2>&1`;
    is($?, 0, 'the ConfigMap\'s nginx.conf passes nginx -t') or diag $t;
}

my ($shutdown) = $conf =~ /^\s*gdrive_shutdown_timeout\s+(\d+)s;/m;
ok($shutdown, "the ConfigMap sets gdrive_shutdown_timeout (${\ ($shutdown // '?')}s)");

my $pod = $doc{Deployment}{spec}{template};
my ($c) = @{ $pod->{spec}{containers} };
cmp_ok($pod->{spec}{terminationGracePeriodSeconds}, '>', ($shutdown // 0) + 5,
       'terminationGracePeriodSeconds exceeds gdrive_shutdown_timeout');
like(join(' ', @{ $c->{lifecycle}{preStop}{exec}{command} }), qr/nginx -s quit/,
     'preStop stops nginx gracefully');

my ($port) = map { $_->{containerPort} } grep { $_->{name} eq 'http' } @{ $c->{ports} };
like($conf, qr/^\s*listen\s+$port;/m, "nginx listens on the container's port $port");
my ($health) = $conf =~ m{location = (/health) \{\s*gdrive_health;};
ok($health, 'a gdrive_health location');
for my $probe (qw(livenessProbe readinessProbe startupProbe)) {
    my $g = $c->{$probe}{httpGet};
    like($g->{path} // '', qr{^\Q$health\E(\?live)?$}, "$probe asks gdrive_health");
    is($g->{port}, 'http', "$probe on the http port");
}
is($c->{livenessProbe}{httpGet}{path}, "$health?live", 'liveness is ?live');

# --- labels, references, scale -----------------------------------------------

my %labels = %{ $pod->{metadata}{labels} };
for my $sel ([Deployment => $doc{Deployment}{spec}{selector}{matchLabels}],
             [Service => $doc{Service}{spec}{selector}],
             [PodDisruptionBudget => $doc{PodDisruptionBudget}{spec}{selector}{matchLabels}]) {
    my ($what, $m) = @$sel;
    ok(!grep({ ($labels{$_} // '') ne $m->{$_} } keys %$m), "the $what selects the pods");
}
is($c->{envFrom}[0]{secretRef}{name}, $doc{Secret}{metadata}{name},
   'the pods read the Secret of the example');
is($doc{ScaledObject}{spec}{scaleTargetRef}{name}, $doc{Deployment}{metadata}{name},
   'the ScaledObject scales the Deployment');

my %env = map { $_->{name} => $_->{value} } @{ $c->{env} };
my $workers = $env{NGINX_WORKER_PROCESSES};
my $parts = $doc{ScaledObject}{metadata}{annotations}{'google-drive-worker/trigger-partitions'};
ok($workers && $parts, "worker processes ($workers) and partitions ($parts) are stated");
cmp_ok($doc{ScaledObject}{spec}{maxReplicaCount} * $workers, '<=', $parts,
       'maxReplicaCount × worker processes stays within the partitions');
my ($trigger) = @{ $doc{ScaledObject}{spec}{triggers} };
is($trigger->{metadata}{consumerGroup}, 'google-drive-worker',
   'KEDA reads the lag of the module\'s group');

done_testing;
