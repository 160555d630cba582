#!/usr/bin/perl

# A trigger body costs what arrived, not the location's limit: 500 chunked
# POSTs that send one small chunk and stall keep the worker's memory
# small, and client_body_timeout ends each with the JSON 408; bodies that
# do arrive, in many chunks or with a length, are read whole.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use GDrive::Test qw(unique_name json http_raw proc_memory);

plan skip_all => 'the stack is not up (make stack)'
    unless $ENV{KAFKA_BOOTSTRAP_SERVERS};
# under sanitizers the run is checked, not its memory
my $sanitized = $ENV{GDRIVE_NGINX_PRELOAD};

my $topic = unique_name('body');
my $t = GDrive::Test->new(workers => 1, http => <<"EOF");
    gdrive_zone gdrive 4m;
    gdrive_kafka_topic $topic;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 8m;
        client_body_timeout 3s;
        location = /triggers { gdrive_trigger_max_batch 500; gdrive_trigger; }
    }
EOF
$t->run;

my $one = '{"integration_id":"i","action":"sync_changes"}';
my $r = $t->http_json(POST => '/triggers', body => $one,
                      headers => { 'content-type' => 'application/json' });
is($r->{status}, 202, 'the worker takes triggers');

my ($pid) = $t->worker_pids;
my ($rss0, $data0) = ((proc_memory($pid) // 0), (proc_memory($pid, 'VmData') // 0));

my $chunk = sprintf "%x\r\n%s\r\n", length $one, $one;
my @socks;
for (1 .. 500) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port) or last;
    print $s "POST /triggers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             . "Transfer-Encoding: chunked\r\n\r\n$chunk";
    push @socks, $s;
}
is(scalar @socks, 500, '500 chunked POSTs stall after their first chunk');
sleep 1;
my ($rss1, $data1) = ((proc_memory($pid) // 0), (proc_memory($pid, 'VmData') // 0));
my ($grew_rss, $grew_data) = map { $_ / 1048576 } ($rss1 - $rss0, $data1 - $data0);
diag sprintf 'worker RSS +%.1f MiB, data +%.1f MiB for 500 stalled bodies', $grew_rss, $grew_data;
SKIP: {
    skip 'memory is not measured under sanitizers', 1 if $sanitized;
    cmp_ok($grew_data, '<', 64, 'their memory is what they sent, not 500 x client_max_body_size');
}
SKIP: {
    skip 'memory is not measured under sanitizers', 1 if $sanitized;
    cmp_ok($grew_rss, '<', 64, 'resident too');
}

# client_body_timeout ends them, each with the JSON 408
my $sel = IO::Select->new(@socks);
my (%status, $json_408);
my $deadline = time + 15;
while ($sel->count && time < $deadline) {
    for my $s ($sel->can_read(1)) {
        my $buf = '';
        sysread($s, $buf, 65536);
        if ($buf =~ m{^HTTP/1\.1 (\d+)}) {
            $status{$1}++;
            $json_408 //= $buf if $1 == 408;
        }
        $sel->remove($s);
        close $s;
    }
}
is($status{408} // 0, 500, 'client_body_timeout answers every one with 408');
like($json_408 // '', qr/\r\n\r\n\{"error":"[a-z_]+"/, 'as a JSON error');

# bodies that arrive are read whole, in many chunks or with a length
my $batch = '[' . join(',', ($one) x 500) . ']';
my $many = join '', map { sprintf "%x\r\n%s\r\n", length $_, $_ } ($batch =~ /(.{1,100})/gs);
my ($st) = http_raw($t->port, "POST /triggers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${many}0\r\n\r\n");
is($st, 202, 'a batch of 500 in chunks of 100 bytes is accepted');
$r = $t->http_json(POST => '/triggers', body => $batch, headers => { 'content-type' => 'application/json' });
is($r->{status}, 202, 'and with a Content-Length');
is(ref $r->{json} eq 'ARRAY' ? scalar @{ $r->{json} } : 0, 500, 'all of it');
is_deeply([$t->alerts], [], 'nginx logged no alert');

done_testing;
