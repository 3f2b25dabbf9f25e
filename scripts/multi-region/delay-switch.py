#!/usr/bin/env python3
# The "bridge" of scripts/multi-region.ts, in user space: an Ethernet switch that delays
# frames. It runs in the namespace hm-br and owns that namespace's ports to-a, to-b, to-c
# (the peers of each region's eth0), reading and writing frames with AF_PACKET sockets.
#
# Why not a kernel bridge and `tc qdisc … netem`: the machine this was written on (a
# Firecracker VM, kernel 6.18) has no sch_netem (nor fq, so no EDT delay with BPF either):
# `tc qdisc add … netem` answers "Specified qdisc kind is unknown". Where netem exists it
# would do the same job; this switch keeps the script runnable without it.
#
# Model: every frame that a region sends (that arrives here from its port) is forwarded
# after that region's delay, `delay <region> <ms>` (half the round trip: the answer
# pays the other region's half). A region that is cut off (`cut <region>`) gets nothing
# and nothing it sends is forwarded: silently, as a partition looks to TCP. Frames keep
# their order per source (one delay per source, a FIFO per source).
#
# Frames carry a virtio_net_hdr (PACKET_VNET_HDR) both ways, so that GSO super-frames and
# frames whose checksum is left to the hardware (veth offloads) pass through unchanged:
# the kernel finishes them on the far side.
#
# Control, one command a line on stdin, each answered "ok" (or "error …") on stdout:
#   delay <region> <ms>     cut <region>     heal <region>     stats     quit

import heapq
import os
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10

regions = sys.argv[1:] or ["a", "b", "c"]
socks = {}
for r in regions:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    s.bind((f"to-{r}", 0))
    s.setblocking(False)
    socks[r] = s
by_fd = {s.fileno(): r for r, s in socks.items()}

delay = {r: 0.0 for r in regions}  # seconds
cut = set()
mac_port = {}  # source MAC -> region
queue = []  # (due, seq, source region, frame)
seq = 0
counts = {"forwarded": 0, "dropped": 0, "send_errors": 0}

poller = select.poll()
for s in socks.values():
    poller.register(s.fileno(), select.POLLIN)
stdin_fd = sys.stdin.fileno()
os.set_blocking(stdin_fd, False)
poller.register(stdin_fd, select.POLLIN)
stdin_buffer = b""


def answer(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def command(line):
    parts = line.split()
    if not parts:
        return True
    try:
        if parts[0] == "delay" and parts[1] in delay:
            delay[parts[1]] = float(parts[2]) / 1000.0
        elif parts[0] == "cut" and parts[1] in delay:
            cut.add(parts[1])
        elif parts[0] == "heal" and parts[1] in delay:
            cut.discard(parts[1])
        elif parts[0] == "stats":
            answer("stats " + " ".join(f"{k}={v}" for k, v in counts.items()) + f" queued={len(queue)}")
            return True
        elif parts[0] == "quit":
            answer("ok")
            return False
        else:
            answer(f"error unknown command {line!r}")
            return True
    except (IndexError, ValueError) as error:
        answer(f"error {error}")
        return True
    answer("ok")
    return True


def deliver(source, frame):
    if source in cut:
        counts["dropped"] += 1
        return
    dst = frame[VNET_HDR_LEN:VNET_HDR_LEN + 6]
    target = None if dst[0] & 1 else mac_port.get(dst)
    targets = [target] if target is not None else [r for r in regions if r != source]
    for r in targets:
        if r in cut or r == source:
            counts["dropped"] += 1
            continue
        try:
            socks[r].send(frame)
            counts["forwarded"] += 1
        except OSError:
            counts["send_errors"] += 1


answer("ready")
running = True
while running:
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        _, _, source, frame = heapq.heappop(queue)
        deliver(source, frame)
    timeout = None if not queue else max(0, int((queue[0][0] - time.monotonic()) * 1000) + 1)
    if queue and queue[0][0] - time.monotonic() < 0.001:
        timeout = 0
    for fd, _ in poller.poll(timeout):
        if fd == stdin_fd:
            chunk = os.read(stdin_fd, 65536)
            if not chunk:
                running = False
                break
            stdin_buffer += chunk
            while b"\n" in stdin_buffer:
                line, stdin_buffer = stdin_buffer.split(b"\n", 1)
                if not command(line.decode()):
                    running = False
            continue
        source = by_fd[fd]
        s = socks[source]
        while True:
            try:
                frame, address = s.recvfrom(70000)
            except BlockingIOError:
                break
            if address[2] == PACKET_OUTGOING:
                continue  # what we sent out of this port ourselves
            src = frame[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12]
            if not src[0] & 1:
                mac_port[src] = source
            if source in cut:
                counts["dropped"] += 1
                continue
            d = delay[source]
            if d <= 0 and not queue:
                deliver(source, frame)
            else:
                seq += 1
                heapq.heappush(queue, (time.monotonic() + d, seq, source, frame))
