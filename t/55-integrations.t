#!/usr/bin/perl

# gdrive_integrations: in single-tenant mode every integration id would
# use the account's refresh token, so a public trigger endpoint could sync
# its files under any prefix; with the allow-list, only the ids it names
# are synced: 403 over HTTP, integration_not_allowed in the DLQ from Kafka.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GDrive::Test qw(job_outcome kafka_produce_lines unique_name consumer_conf json);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};

my $topic = unique_name('allow');
my $t = GDrive::Test->new(workers => 1,
                          env => { CONTROL_PLANE_URL => undef },
                          http => <<"EOF");
    gdrive_zone gdrive 4m;
@{[ consumer_conf($topic) ]}
    gdrive_kafka_commit_interval 500ms;
    gdrive_integrations default, team-a;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /triggers { gdrive_trigger; }
    }
EOF
$t->run;

sub post {
    my ($body) = @_;
    return $t->http_json(POST => '/triggers', body => $body,
                         headers => { 'content-type' => 'application/json' });
}

my $r = post('{"integration_id":"mallory","action":"sync_changes"}');
is($r->{status}, 403, 'a trigger for an integration not on the list is 403');
is($r->{json}{error}, 'integration_not_allowed', 'with a JSON error');

$r = post('[{"integration_id":"default","action":"sync_changes"},'
          . '{"integration_id":"mallory","action":"sync_changes"}]');
is($r->{status}, 403, 'a batch with one of them is refused whole');

$r = post('{"integration_id":"default","action":"sync_changes"}');
is($r->{status}, 202, 'one on the list is accepted');
my $id = $r->{json}{trigger_id} // '';
is(job_outcome($topic, $id)->{result}{status}, 'changes_listed', 'and synced with the default token');

my $run = unique_name('x');
kafka_produce_lines($topic, ['mallory', qq({"trigger_id":"m-$run","integration_id":"mallory","action":"sync_changes"})]);
my $o = job_outcome($topic, "m-$run");
is($o->{dead}{headers}{'gdrive.error.code'}, 'integration_not_allowed',
   'from Kafka it goes to the DLQ as integration_not_allowed');
is($o->{dead}{headers}{'gdrive.error.attempts'}, 1, 'at once');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
