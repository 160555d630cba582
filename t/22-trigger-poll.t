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
use GDrive::Test qw(unique_name nginx_bin);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

# Debian's nginx (and a default build on Linux) has only epoll: this runs
# with an nginx built --with-poll_module --with-select_module, given as
# TEST_NGINX_BINARY, and with the module built for it (GDRIVE_MODULE)
my $probe = tempdir(CLEANUP => 1);
my @methods = grep {
    open my $fh, '>', "$probe/$_.conf" or die $!;
    print $fh "events { use $_; }\n";
    close $fh;
    system(nginx_bin() . " -p $probe/ -t -q -c $probe/$_.conf >/dev/null 2>&1") == 0
} qw(poll select);
plan skip_all => 'this nginx has neither the poll nor the select method' unless @methods;

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
    # the error log nginx opens before it reads its configuration
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
