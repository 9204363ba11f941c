#!/usr/bin/perl
# Relay syslog datagrams from /dev/log sockets inside the SFTP chroots to stdout.
#
# internal-sftp logs every SFTP transaction (open, close, remove, rename...) with
# syslog(3), which after the chroot can only reach a /dev/log inside the chroot; the
# container has no syslog daemon. This creates those sockets (arguments: their paths)
# and prints one line per message, next to sshd's own log on the container's output.
# perl-base is part of every Debian image, so this adds no package.
use strict;
use warnings;
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);

$| = 1;
my $select = IO::Select->new;
for my $path (@ARGV) {
    unlink $path;
    my $socket = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
        or die "syslog-relay: cannot listen on $path: $!\n";
    # The session writes as the account's uid; the chroots' /dev is root-owned.
    chmod 0666, $path or die "syslog-relay: cannot chmod $path: $!\n";
    $select->add($socket);
}
while (1) {
    for my $socket ($select->can_read) {
        my $message;
        defined $socket->recv($message, 65536) or next;
        $message =~ s/^<\d+>//;          # the priority; the facility is AUTH by config
        $message =~ s/[\r\n]+$//;
        $message =~ s/[\r\n]/ /g;        # one message, one line
        print "$message\n";
    }
}
