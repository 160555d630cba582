#!/usr/bin/perl

# gdrive_trigger under nginx's level-triggered event methods (poll,
# select): the Kafka event pipe stays watched after its first wakeup, so
# every trigger gets its 202, not only the first one.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GDrive::Test qw(unique_name nginx_bin repo_root);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

# Debian's nginx (and a default build on Linux) has only epoll: unless
# TEST_NGINX_BINARY has the methods, t/stack/build-poll-nginx.sh builds an
# nginx with them from Debian's source package (once: it is kept in
# build/), binary compatible with the module that make built, which it runs
my $probe = tempdir(CLEANUP => 1);
mkdir "$probe/logs";    # the error log an nginx opens before its configuration

sub methods {
    return grep {
        open my $fh, '>', "$probe/$_.conf" or die $!;
        print $fh "pid $probe/nginx.pid;\nerror_log $probe/error.log;\nevents { use $_; }\n";
        close $fh;
        system(nginx_bin() . " -p $probe/ -t -q -c $probe/$_.conf >/dev/null 2>&1") == 0
    } qw(poll select);
}

my @methods = methods();
unless (@methods || $ENV{TEST_NGINX_BINARY}) {
    my $build = `bash ${\ repo_root()}/t/stack/build-poll-nginx.sh`;
    chomp $build;
    plan skip_all => 'no nginx with poll or select could be built '
                     . '(t/stack/build-poll-nginx.sh failed)' if $? || !$build;
    $ENV{TEST_NGINX_BINARY} = "$build/objs/nginx";
    @methods = methods();
}
is(scalar @methods, 2, 'the nginx under test has the poll and select methods');

for my $method (@methods) {
    my $topic = unique_name("trigger-$method");

    my $t = GDrive::Test->new(events => "use $method;", http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_topic $topic;
    gdrive_kafka_delivery_timeout 5s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
    }
EOF
    mkdir $t->dir . '/logs';
    $t->run;

    my @status;
    for my $i (1 .. 5) {
        my $r = $t->http_json(POST => '/triggers',
            headers => { 'content-type' => 'application/json' },
            body => qq({"trigger_id":"$method-$i","integration_id":"int-$i","action":"sync_changes"}),
            timeout => 15);
        push @status, $r->{status};
    }

    is("@status", '202 202 202 202 202', "with \"use $method\", five triggers in a row are acknowledged");
    ok(!$t->alerts, "with \"use $method\", no alert in the error log");

    $t->stop;
}

done_testing();
