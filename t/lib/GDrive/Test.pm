package GDrive::Test;

# The test harness of nginx-gdrive-worker: starts Debian's nginx with the
# built module and a configuration written by the test, in a directory of
# its own; speaks HTTP to it; reads its error log; and reaches the local
# stack (Kafka through kcat, S3 through signed curl requests, the Google
# emulator through its admin API).

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA;
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Open2 qw(open2);
use JSON::PP;
use Scalar::Util qw(weaken);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(repo_root module_path nginx_bin free_port json
                    kafka_json_by_id s3_object emulator_content
                    job_outcome drive_file
                    http_raw wait_until stack_env kafka_produce
                    kafka_produce_lines kafka_committed
                    kafka_consume kafka_offsets unique_name
                    emulator s3_request consumer_conf fault_proxy dns_server
                    proc_memory);

my $JSON = JSON::PP->new->canonical->allow_nonref;
my @RUNNING;    # started nginx instances (weak references)

# every environment variable the module falls back to
our @MODULE_ENV = qw(KAFKA_BOOTSTRAP_SERVERS KAFKA_MAX_POLL_RECORDS
    KAFKA_MAX_POLL_INTERVAL_MS KAFKA_SESSION_TIMEOUT_MS KAFKA_FETCH_MIN_BYTES
    KAFKA_FETCH_MAX_WAIT_MS GOOGLE_TOKEN_URL GOOGLE_API_URL GOOGLE_CLIENT_ID
    GOOGLE_CLIENT_SECRET GOOGLE_REFRESH_TOKEN GOOGLE_API_DEBUG
    CONTROL_PLANE_URL S3_ENDPOINT AWS_REGION S3_BUCKET_NAME AWS_ACCESS_KEY_ID
    AWS_SECRET_ACCESS_KEY S3_PREFIX S3_PATH_STYLE GDRIVE_API_RATE_LIMIT
    GDRIVE_API_GLOBAL_RATE_LIMIT WORKER_MAX_CONCURRENT_CONNECTIONS
    GDRIVE_MAX_INFLIGHT);

sub repo_root { abs_path(dirname(__FILE__) . '/../../..') }

sub module_path {
    $ENV{GDRIVE_MODULE} // repo_root() . '/build/ngx_http_gdrive_worker_module.so';
}

sub nginx_bin { $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx' }

sub json { $JSON }

sub unique_name {
    my ($prefix) = @_;
    return sprintf '%s-%d-%d-%04d', $prefix, $$, time, int rand 10000;
}

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or croak "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# a process's memory in bytes from /proc/PID/status (VmRSS unless another
# field is named, such as VmData), or undef when it is gone
sub proc_memory {
    my ($pid, $field) = @_;
    $field //= 'VmRSS';
    open my $fh, '<', "/proc/$pid/status" or return;
    while (<$fh>) { return $1 * 1024 if /^\Q$field\E:\s+(\d+) kB/ }
    return;
}

sub wait_until {
    my ($what, $timeout, $cond) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.1;
    }
    return;
}

# --- the local stack -------------------------------------------------------

sub stack_env {
    my %env;
    my $file = repo_root() . '/build/stack.env';
    return \%env unless -f $file;
    open my $fh, '<', $file or croak "$file: $!";
    while (<$fh>) {
        next unless /^([A-Z_0-9]+)=(.*)$/;
        my ($k, $v) = ($1, $2);
        $v =~ s/^'(.*)'$/$1/ or $v =~ s/^"(.*)"$/$1/;
        $env{$k} = $v;
    }
    return \%env;
}

sub _brokers { $ENV{KAFKA_BOOTSTRAP_SERVERS} // stack_env()->{KAFKA_BOOTSTRAP_SERVERS} }

# produce records: [[key, value, {headers}], ...] to topic (kcat, one call)
sub kafka_produce {
    my ($topic, @records) = @_;
    my $dir = tempdir(CLEANUP => 1);
    for my $i (0 .. $#records) {
        my ($key, $value, $headers) = @{ $records[$i] };
        open my $fh, '>', "$dir/$i" or croak $!;
        binmode $fh;
        print $fh $value;
        close $fh;
        my @cmd = ('kcat', '-P', '-b', _brokers(), '-t', $topic,
                   '-X', 'enable.idempotence=true', '-X', 'acks=all');
        push @cmd, '-k', $key if defined $key;
        push @cmd, map { ('-H', "$_=$headers->{$_}") } sort keys %{ $headers // {} };
        system(@cmd, "$dir/$i") == 0 or croak "kcat produce failed: $?";
    }
    return scalar @records;
}

# produce many one-line records fast: [key, value], ... (no newlines, no ':'
# in keys); one kcat call
sub kafka_produce_lines {
    my ($topic, @records) = @_;
    open my $fh, '|-', 'kcat', '-P', '-b', _brokers(), '-t', $topic, '-K', "\t",
        '-X', 'enable.idempotence=true', '-X', 'acks=all'
        or croak "kcat: $!";
    binmode $fh;
    print $fh "$_->[0]\t$_->[1]\n" for @records;
    close $fh or croak "kcat produce failed: $?";
    return scalar @records;
}

# committed offsets of a group: { partition => offset } (Kafka's own tool)
sub kafka_committed {
    my ($group, $topic) = @_;
    my $tool = repo_root() . '/t/stack/kafka-tool.sh';
    my %off;
    for (`bash $tool consumer-groups --bootstrap-server ${\ _brokers()} --describe --group $group 2>/dev/null`) {
        my @f = split ' ';
        next unless @f >= 5 && $f[1] eq $topic && $f[2] =~ /^\d+$/;
        $off{$f[2]} = { committed => $f[3], end => $f[4] };
    }
    return \%off;
}

# consume from a topic: returns a list of hashes (topic, partition, offset,
# key, payload, headers => {..}); reads to the end of every partition
sub kafka_consume {
    my ($topic, %o) = @_;
    # the broker answers a fetch at the end at once, not after the 500 ms
    # it would wait for new records: -e exits as soon as it is at the end
    my @cmd = ('kcat', '-C', '-b', _brokers(), '-t', $topic, '-e', '-q',
               '-X', 'fetch.wait.max.ms=5',
               '-f', '%p %o %K %S %T %h\n%k%s\n');
    push @cmd, '-p', $o{partition} if defined $o{partition};
    push @cmd, '-o', $o{offset} // 'beginning';
    push @cmd, '-c', $o{count} if defined $o{count};
    open my $fh, '-|', @cmd or croak "kcat: $!";
    binmode $fh;
    local $/;
    my $out = <$fh> // '';
    close $fh;

    my @records;
    while (length $out) {
        $out =~ s/^(\d+) (\d+) (-?\d+) (-?\d+) (-?\d+) ([^\n]*)\n//
            or croak "cannot parse kcat output: " . substr($out, 0, 200);
        my ($p, $off, $klen, $vlen, $ts, $h) = ($1, $2, $3, $4, $5, $6);
        $klen = 0 if $klen < 0;
        $vlen = 0 if $vlen < 0;
        my $key = substr($out, 0, $klen, '');
        my $val = substr($out, 0, $vlen, '');
        substr($out, 0, 1, '');    # the record's newline
        my %headers;
        for my $kv (split /,/, $h) {
            my ($k, $v) = split /=/, $kv, 2;
            $headers{$k} = $v if defined $k && length $k;
        }
        push @records, { topic => $topic, partition => $p, offset => $off,
                         timestamp => $ts,
                         key => ($klen ? $key : undef), payload => $val,
                         headers => \%headers };
    }
    return @records;
}

# --- reading result and DLQ topics as they grow -------------------------------
#
# A test polls a topic for the outcome of its triggers many times a second,
# while the topic grows to thousands of records.  Rather than reading the
# whole topic again each time, one kcat per topic follows it (from the
# beginning, never exiting) into a file of its own; each look parses only
# what was appended since the last, and keeps the JSON records by
# trigger_id.  Its "Reached end" lines on stderr say how far it has read
# each partition (control records included).  A topic that does not exist
# yet makes kcat exit at once: it is tried again until it does.  The
# followers are stopped when the test ends, and stop themselves when the
# test is gone, however it ended.

my %TAILS;    # topic => the state of its follower
my $TAIL_FORMAT = '%p %o %K %S %T %h\n%k%s\n';
my $TAIL_RETRY = 0.3;    # seconds between tries on a topic not there yet

# the follower of a topic in this process, started on first use
sub _tail {
    my ($topic) = @_;
    my $t = $TAILS{$topic};
    return $t if $t && $t->{owner} == $$;
    my $dir = tempdir(CLEANUP => 1);
    $t = $TAILS{$topic} = { topic => $topic, dir => $dir, owner => $$,
                            buf => '', out_pos => 0, err_pos => 0,
                            err_buf => '', by_id => {}, first_id => {},
                            next => {} };
    _tail_start($t);
    return $t;
}

# a watchdog process (a grandchild, so that no wait() of the test reaps
# it) runs kcat, tries again while the topic is missing (kcat exited
# having printed nothing), and stops it when the test is gone
sub _tail_start {
    my ($t) = @_;
    my ($dir, $parent) = ($t->{dir}, $$);
    open my $touch, '>', "$dir/out" or croak "$dir/out: $!";
    close $touch;
    unlink "$dir/exit", "$dir/err";
    my @cmd = ('kcat', '-C', '-u', '-b', _brokers(), '-t', $t->{topic},
               '-o', 'beginning', '-f', $TAIL_FORMAT);
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        # nothing of the test's stays open in it: no socket or pipe the
        # test closes is kept open here
        if (opendir my $fds, '/proc/self/fd') {
            my @fds = grep { /^\d+$/ && $_ > 2 } readdir $fds;
            closedir $fds;
            POSIX::close($_) for @fds;
        }
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        POSIX::setsid();
        my $watchdog = fork;
        POSIX::_exit(defined $watchdog ? 0 : 1) if $watchdog // 1;
        eval { _tail_watchdog($dir, $parent, @cmd) };
        POSIX::_exit(0);
    }
    waitpid $pid, 0;
    $t->{started} = time;
}

sub _tail_watchdog {
    my ($dir, $parent, @cmd) = @_;
    my $kcat;
    local $SIG{TERM} = sub { kill 'TERM', $kcat if $kcat; POSIX::_exit(0) };
    while (1) {
        $kcat = fork // POSIX::_exit(1);
        if (!$kcat) {
            open STDOUT, '>>', "$dir/out" or POSIX::_exit(1);
            open STDERR, '>>', "$dir/err" or POSIX::_exit(1);
            exec @cmd or POSIX::_exit(127);
        }
        if (open my $pf, '>', "$dir/pid.tmp") {
            print $pf "$$ $kcat\n";
            close $pf;
            rename "$dir/pid.tmp", "$dir/pid";
        }
        while (waitpid($kcat, WNOHANG) == 0) {
            if (!kill 0, $parent) {
                kill 'TERM', $kcat;
                waitpid $kcat, 0;
                POSIX::_exit(0);
            }
            sleep 0.2;
        }
        my $status = $?;
        $kcat = undef;
        # it printed records and exited: the reader starts over
        if (-s "$dir/out") {
            if (open my $ef, '>', "$dir/exit") {
                print $ef "$status\n";
                close $ef;
            }
            POSIX::_exit(0);
        }
        sleep $TAIL_RETRY;
        POSIX::_exit(0) unless kill 0, $parent;
    }
}

sub _tail_stop {
    my ($t) = @_;
    open my $fh, '<', "$t->{dir}/pid" or return;
    my ($watchdog, $kcat) = split ' ', <$fh> // '';
    # the watchdog first: it would start kcat again
    kill 'TERM', grep { $_ && $_ > 1 } $watchdog, $kcat;
}

sub _slurp_from {
    my ($file, $pos) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    seek $fh, $pos, 0;
    local $/;
    return <$fh> // '';
}

# parse what the follower appended since the last look
sub _tail_read {
    my ($t) = @_;
    my $dir = $t->{dir};
    if (-e "$dir/exit") {
        # kcat quit after records: read the topic again from the start
        _tail_stop($t);
        %$t = (%$t, buf => '', out_pos => 0, err_pos => 0, err_buf => '',
               by_id => {}, first_id => {}, next => {});
        _tail_start($t);
        return $t;
    }
    # stderr first: an end reported there was preceded by its records
    my $err = _slurp_from("$dir/err", $t->{err_pos});
    $t->{err_pos} += length $err;
    $t->{err_buf} .= $err;
    my %eof;
    while ($t->{err_buf} =~ s/^([^\n]*)\n//) {
        my $line = $1;
        $eof{$1} = $2 if $line =~ /^% Reached end of topic .* \[(\d+)\] at offset (\d+)/;
    }
    my $out = _slurp_from("$dir/out", $t->{out_pos});
    $t->{out_pos} += length $out;
    $t->{buf} .= $out;
    _tail_parse($t);
    for my $p (keys %eof) {
        $t->{next}{$p} = $eof{$p} if $eof{$p} > ($t->{next}{$p} // 0);
    }
    return $t;
}

sub _tail_parse {
    my ($t) = @_;
    my $buf = \$t->{buf};
    while ($$buf =~ /\A(\d+) (\d+) (-?\d+) (-?\d+) (-?\d+) ([^\n]*)\n/) {
        my ($p, $off, $klen, $vlen, $ts, $h) = ($1, $2, $3, $4, $5, $6);
        my $head = $+[0];
        my $k = $klen < 0 ? 0 : $klen;
        my $v = $vlen < 0 ? 0 : $vlen;
        last if length($$buf) < $head + $k + $v + 1;    # not all there yet
        my $rec = _record($t->{topic}, $p, $off, $ts, $h,
                          ($klen >= 0 ? substr($$buf, $head, $k) : undef),
                          substr($$buf, $head + $k, $v));
        substr($$buf, 0, $head + $k + $v + 1, '');
        $t->{next}{$p} = $off + 1 if $off + 1 > ($t->{next}{$p} // 0);
        my $j = eval { $JSON->decode($rec->{payload}) } or next;
        next unless ref $j eq 'HASH' && defined $j->{trigger_id};
        $j->{_record} = $rec;
        $t->{by_id}{$j->{trigger_id}} = $j;
        $t->{first_id}{$j->{trigger_id}} //= $j;
    }
    croak "cannot parse kcat output: " . substr($$buf, 0, 200)
        if length $$buf && $$buf !~ /\A\d/;
}

sub _record {
    my ($topic, $p, $off, $ts, $h, $key, $val) = @_;
    my %headers;
    for my $kv (split /,/, $h) {
        my ($k, $v) = split /=/, $kv, 2;
        $headers{$k} = $v if defined $k && length $k;
    }
    return { topic => $topic, partition => $p, offset => $off,
             timestamp => $ts, key => ($key // '') eq '' ? undef : $key,
             payload => $val, headers => \%headers };
}

# the end offset of each partition of a topic now ({} if there is no
# such topic)
sub _end_offsets {
    my ($topic) = @_;
    my @cmd = ('kcat', '-C', '-b', _brokers(), '-t', $topic, '-o', 'end',
               '-e', '-X', 'fetch.wait.max.ms=5', '-f', '');
    my $pid = open my $fh, '-|' // croak "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    my %end;
    while (<$fh>) {
        $end{$1} = $2 if /^% Reached end of topic .* \[(\d+)\] at offset (\d+)/;
    }
    close $fh;
    return \%end;
}

# the follower of a topic once it has read everything the topic held when
# this was called
sub _tail_synced {
    my ($topic) = @_;
    my $t = _tail($topic);
    my $end = _end_offsets($topic);
    my $caught_up = sub {
        _tail_read($t);
        !grep { ($t->{next}{$_} // 0) < $end->{$_} } keys %$end;
    };
    wait_until("kcat reads $topic", 60, $caught_up)
        or croak "$topic: not read to its end in 60 seconds";
    return $t;
}

END {
    local $?;
    _tail_stop($_) for grep { $_->{owner} == $$ } values %TAILS;
}

# the JSON records of a topic by trigger_id (the last one wins), each with
# its Kafka record under _record; everything the topic holds when called
sub kafka_json_by_id {
    my ($topic) = @_;
    return { %{ _tail_synced($topic)->{by_id} } };
}

# what became of a trigger consumed from $topic: { result => the result
# event } or { dead => its DLQ record }, or {} after $timeout seconds
sub job_outcome {
    my ($topic, $id, $timeout) = @_;
    my $look = sub {
        my ($result, $dlq) = @_;
        my $r = $result->{by_id}{$id};
        return { result => { %$r } } if $r;
        my $d = $dlq->{first_id}{$id};
        return { dead => { %{ $d->{_record} } } } if $d;
        return;
    };
    my $got = wait_until("outcome of $id", $timeout // 60, sub {
        $look->(_tail_read(_tail("$topic.result")),
                _tail_read(_tail("$topic.dlq")));
    });
    # before saying there is none: everything the topics hold now
    $got //= $look->(_tail_synced("$topic.result"), _tail_synced("$topic.dlq"));
    return $got // {};
}

# --- the Google emulator ----------------------------------------------------

sub emulator {
    my ($method, $path, $body) = @_;
    my $base = $ENV{GOOGLE_EMULATOR_ADMIN_URL}
               // stack_env()->{GOOGLE_EMULATOR_ADMIN_URL}
               // croak 'no emulator admin URL: is the stack up?';
    my $res = HTTP::Tiny->new(timeout => 30)->request($method, "$base$path", {
        headers => { 'content-type' => 'application/json' },
        (defined $body ? (content => _utf8($JSON->encode($body))) : ()),
    });
    my $data = eval { $JSON->decode($res->{content}) };
    return wantarray ? ($res->{status}, $data, $res) : $data;
}

# the consumer's lines of a test configuration: the topic, its result and
# DLQ topics, and a group of its own
sub consumer_conf {
    my ($topic) = @_;
    return join "\n", map { "    $_;" } 'gdrive_consumer on',
        "gdrive_kafka_topic $topic", "gdrive_kafka_result_topic $topic.result",
        "gdrive_kafka_dlq_topic $topic.dlq", "gdrive_kafka_group group-$topic";
}

# --- the fault-injecting proxy (t/stack/fault-proxy.js) -------------------------

my @PROXIES;

# a proxy in front of a URL: (its URL, a function that calls its control
# API with method, path and an optional body, and returns the decoded
# answer); stopped at exit
sub fault_proxy {
    my ($target) = @_;
    my $pid = open2(my $out, my $in, 'node', repo_root() . '/t/stack/fault-proxy.js',
                    '--target', $target, '--port', '0');
    push @PROXIES, $pid;
    my $line = <$out>;
    my ($url) = ($line // '') =~ m{(http://\S+)} or croak 'the fault proxy did not start';
    my $control = sub {
        my ($method, $path, $body) = @_;
        my $res = HTTP::Tiny->new(timeout => 30)->request($method, "$url/__proxy$path", {
            headers => { 'content-type' => 'application/json' },
            (defined $body ? (content => $JSON->encode($body)) : ()) });
        return eval { $JSON->decode($res->{content}) };
    };
    return ($url, $control);
}

# a DNS server (t/stack/dns-server.js) that answers NAME => IPv4 and
# nothing else: its UDP port; stopped at exit
sub dns_server {
    my (%answers) = @_;
    my $pid = open2(my $out, my $in, 'node', repo_root() . '/t/stack/dns-server.js',
                    (map { ('--answer', "$_=$answers{$_}") } sort keys %answers),
                    '--port', '0');
    push @PROXIES, $pid;
    my $line = <$out>;
    my ($port) = ($line // '') =~ m{listening on 127\.0\.0\.1:(\d+)} or croak 'the DNS server did not start';
    return $port;
}

# --- S3 through curl's SigV4 ------------------------------------------------

sub s3_request {
    my ($method, $path, %o) = @_;
    my $env = { %{ stack_env() }, %ENV };
    my $secret = $o{secret} // $env->{AWS_SECRET_ACCESS_KEY};
    # headers => 1 with HEAD: the response's header lines are the output
    my @cmd = ('curl', '-s', '-o', $o{output} // '-', '-w', '%{http_code}',
               ($method eq 'HEAD' && $o{headers} ? '-I' : ('-X', $method)),
               '--aws-sigv4', "aws:amz:$env->{AWS_REGION}:s3",
               '--user', "$env->{AWS_ACCESS_KEY_ID}:$secret");
    # curl signs the payload hash it is given; S3 checks it against the body
    my $sha = Digest::SHA->new(256);
    $sha->addfile($o{file}) if $o{file};
    push @cmd, '-H', 'x-amz-content-sha256: ' . $sha->hexdigest;
    push @cmd, '-T', $o{file} if $o{file};
    push @cmd, "$env->{S3_ENDPOINT}$path";
    open my $fh, '-|', @cmd or croak "curl: $!";
    binmode $fh;
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $code = substr($out, -3, 3, '');
    return ($code, $out);
}

# a file in the emulator's Drive (a fresh id unless one is given)
sub drive_file {
    my (%f) = @_;
    $f{id} //= unique_name('file') =~ s/[^A-Za-z0-9_-]/_/gr;
    return scalar emulator(POST => '/files', \%f);
}

# an object's bytes, or undef when S3 does not answer 200
sub s3_object {
    my ($key) = @_;
    my $env = { %{ stack_env() }, %ENV };
    my $file = File::Temp->new;
    my ($code) = s3_request(GET => "/$env->{S3_BUCKET_NAME}/" . _s3_path($key),
                            output => "$file");
    return undef unless $code eq '200';
    open my $fh, '<', "$file" or croak $!;
    binmode $fh;
    local $/;
    return scalar <$fh>;
}

# what the emulator serves for a file (its export with a type)
sub emulator_content {
    my ($id, $type) = @_;
    my $base = $ENV{GOOGLE_EMULATOR_ADMIN_URL}
               // stack_env()->{GOOGLE_EMULATOR_ADMIN_URL};
    my $url = "$base/files/$id/content"
              . (defined $type ? '?mimeType=' . _uri_escape($type) : '');
    my $res = HTTP::Tiny->new(timeout => 120)->get($url);
    croak "emulator content of $id: $res->{status}" unless $res->{success};
    return $res->{content};
}

sub _utf8 { my ($s) = @_; utf8::encode($s); return $s }

sub _uri_escape {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

sub _s3_path { join '/', map { _uri_escape($_) } split m{/}, $_[0], -1 }

# --- raw HTTP ---------------------------------------------------------------

# sends bytes as they are, returns (status, {headers}, body)
sub http_raw {
    my ($port, $request, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5)
        or croak "connect to $port: $!";
    binmode $s;
    print $s $request;
    my $reply = '';
    my $deadline = time + ($o{timeout} // 30);
    $s->blocking(0);
    while (time < $deadline) {
        my $n = sysread($s, my $buf, 65536);
        if (defined $n) {
            last if $n == 0;
            $reply .= $buf;
            next;
        }
        sleep 0.01;
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $reply, 2;
    return (0, {}, '') unless defined $head;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/\d\.\d (\d+)};
    my %h = map { my ($k, $v) = split /:\s*/, $_, 2; (lc $k => $v) } @lines;
    return ($status // 0, \%h, $body // '');
}

# --- nginx ------------------------------------------------------------------

# GDrive::Test->new(http => '...', main => '...', env => {...})
sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir  => tempdir('gdrive-test-XXXXXX', TMPDIR => 1,
                        CLEANUP => !$ENV{TEST_KEEP}),
        port => $o{port} // free_port(),
        env  => $o{env} // {},
        owner => $$,
        %o,
    }, $class;
    chmod 0755, $self->{dir};
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }
sub url  { "http://127.0.0.1:$_[0]{port}$_[1]" }

sub conf_text {
    my ($self) = @_;
    my $dir = $self->{dir};
    my $module = module_path();
    my $http = $self->{http} // '';
    my $main = $self->{main} // '';
    my $events = $self->{events} // '';
    $http =~ s/%%PORT%%/$self->{port}/g;
    my $user = $> == 0 ? "user root root;\n" : '';
    my $workers = $self->{workers} // 1;
    return <<"CONF";
load_module $module;
${user}worker_processes $workers;
daemon on;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log ${\ ($self->{log_level} // 'info')};
$main
events { worker_connections 1024; $events }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$http
}
CONF
}

sub write_conf {
    my ($self) = @_;
    my $file = "$self->{dir}/nginx.conf";
    open my $fh, '>', $file or croak "$file: $!";
    print $fh $self->conf_text;
    close $fh;
    return $file;
}

sub _nginx {
    my ($self, @args) = @_;
    my $file = $self->write_conf;
    local %ENV = %ENV;
    delete @ENV{@MODULE_ENV} if $self->{clean_env};
    for my $k (keys %{ $self->{env} }) {
        my $v = $self->{env}{$k};
        if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
    }
    # sanitizer runtimes go into nginx only, not into the tools tests run
    $ENV{LD_PRELOAD} = $ENV{GDRIVE_NGINX_PRELOAD} if $ENV{GDRIVE_NGINX_PRELOAD};
    my $out = `${\ nginx_bin()} -p $self->{dir}/ -c $file @args 2>&1`;
    return ($? >> 8, $out);
}

# nginx -t: returns (exit code, output)
sub test_conf { my ($self) = @_; return $self->_nginx('-t') }

sub run {
    my ($self) = @_;
    my ($rc, $out) = $self->_nginx();
    croak "nginx failed to start ($rc): $out" if $rc;
    my $port = $self->{port};
    wait_until('nginx listens', 10, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    }) or croak "nginx does not listen on $port";
    $self->{running} = 1;
    # the pid file goes with the temporary directory, which File::Temp
    # removes at exit before objects are destroyed: keep the pid
    $self->{master} = $self->master_pid;
    push @RUNNING, $self;
    weaken($RUNNING[-1]);
    return $self;
}

sub master_pid {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/nginx.pid" or return;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

sub worker_pids {
    my ($self) = @_;
    my $master = $self->master_pid or return;
    my @pids = split ' ', `pgrep -P $master 2>/dev/null`;
    # a pid gone between pgrep and the read (a killed or exiting worker) is
    # no worker
    return grep {
        my $cmdline = '';
        if (open my $fh, '<', "/proc/$_/cmdline") {
            local $/;
            $cmdline = <$fh> // '';
        }
        $cmdline =~ /worker process/
    } @pids;
}

sub signal {
    my ($self, $sig) = @_;
    my $pid = $self->master_pid or return;
    kill $sig, $pid;
}

sub reload {
    my ($self) = @_;
    my ($rc, $out) = $self->_nginx('-s', 'reload');
    croak "reload failed: $out" if $rc;
}

sub stop {
    my ($self) = @_;
    return unless $self->{running};
    my $pid = $self->master_pid // $self->{master};
    $self->{running} = 0;
    return unless $pid;
    kill 'QUIT', $pid;
    wait_until('nginx exits', 30, sub { !kill 0, $pid })
        or kill 'KILL', $pid;
}

# a forked child of the test must not stop the parent's nginx
sub DESTROY { $_[0]->stop if $_[0]{owner} == $$ }

# every nginx a test started is stopped when the test ends, however it
# ends; this END block runs before File::Temp removes the directories
END {
    local $?;
    for my $t (grep { defined } @RUNNING) {
        $t->stop if $t->{owner} == $$;
    }
    kill 'TERM', @PROXIES if @PROXIES;
}

sub error_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/error.log" or return '';
    local $/;
    return <$fh> // '';
}

# error log lines at alert level or worse (crashes are logged as alerts)
sub alerts {
    my ($self) = @_;
    return grep { /\[(alert|crit|emerg)\]/ } split /\n/, $self->error_log;
}

sub http {
    my ($self, $method, $path, %o) = @_;
    my $ua = HTTP::Tiny->new(timeout => $o{timeout} // 30,
                             keep_alive => 0);
    my $res = $ua->request($method, $self->url($path), {
        headers => $o{headers} // {},
        (defined $o{body} ? (content => $o{body}) : ()),
    });
    return $res;
}

# the operator locations answer JSON to tools that ask for it
sub http_json {
    my ($self, $method, $path, %o) = @_;
    $o{headers} = { accept => 'application/json', %{ $o{headers} // {} } };
    my $res = $self->http($method, $path, %o);
    $res->{json} = eval { $JSON->decode($res->{content}) };
    return $res;
}

# a metric of the location at $path (/metrics), summed over its labels
sub metric_sum {
    my ($self, $name, $path) = @_;
    my $m = $self->http(GET => $path // '/metrics')->{content} // '';
    my $sum = 0;
    $sum += $1 while $m =~ /^\Q$name\E\{[^}]*\} (\d+)$/mg;
    return $sum;
}

1;
