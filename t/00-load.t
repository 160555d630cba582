#!/usr/bin/perl

# The module loads into Debian's nginx, and loaded without any gdrive_*
# directive it changes nothing.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(module_path);

ok(-f module_path(), 'the module is built') or BAIL_OUT('build it first');

my $t = GDrive::Test->new(clean_env => 1, http => <<'EOF2');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "plain\n"; }
        location /echo { return 202 "$request_method\n"; }
    }
EOF2

my ($rc, $out) = $t->test_conf;
is($rc, 0, 'nginx -t accepts a configuration without gdrive directives')
    or diag $out;

$t->run;

my $r = $t->http(GET => '/');
is($r->{status}, 200, 'a plain location answers');
is($r->{content}, "plain\n", 'with its own body');

$r = $t->http(POST => '/echo', body => '{}',
              headers => { 'content-type' => 'application/json' });
is($r->{status}, 202, 'POST to a plain location is untouched');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts in the error log');

# a location with a gdrive handler next to plain ones

$t = GDrive::Test->new(clean_env => 1, http => <<'EOF2');
    gdrive_zone gdrive 4m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "plain\n"; }
        location = /health { gdrive_health; }
    }
EOF2

$t->run;

$r = $t->http_json(GET => '/health?live');
is($r->{status}, 200, 'the health location answers');
is($r->{headers}{'content-type'}, 'application/json', 'in JSON');
is($r->{json}{status}, 'healthy', 'and says the loop runs');

$r = $t->http_json(DELETE => '/health');
is($r->{status}, 405, 'health refuses DELETE');
is($r->{json}{error}, 'method_not_allowed', 'with a JSON error code');

is($t->http(GET => '/')->{content}, "plain\n",
   'other locations keep their behaviour');

$t->reload;
ok(GDrive::Test::wait_until('reloaded', 10,
       sub { $t->error_log =~ /reconfiguring/ }),
   'nginx reloads with the zone');
is($t->http_json(GET => '/health')->{status}, 200,
   'health answers after the reload');

$t->stop;
is_deeply([$t->alerts], [], 'no alerts in the error log');

done_testing;
