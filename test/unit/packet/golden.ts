/**
 * Real frames, captured with tcpdump from Linux 6.18 in throw-away network namespaces (a veth pair
 * with checksum offload off, so every checksum below was computed by the kernel; a vxlan device on
 * each end), copied here by hand, one protocol layer per line. The two ARP frames are the inner
 * frames of VXLAN packets of the same capture.
 */
import { hex } from './util.js';

/** ARP request "who-has 10.1.0.2 tell 10.1.0.1" (as sent: 42 bytes, no padding yet). */
export const ARP_REQUEST = hex(`
  ffffffffffff 525400cc0001 0806                      # Ethernet: broadcast <- 52:54:00:cc:00:01, ARP
  0001 0800 06 04 0001                                # htype 1, ptype IPv4, hlen 6, plen 4, request
  525400cc0001 0a010001                               # sender 52:54:00:cc:00:01 10.1.0.1
  000000000000 0a010002                               # target 00:00:00:00:00:00 10.1.0.2
`);

/** The kernel's ARP reply to ARP_REQUEST. */
export const ARP_REPLY = hex(`
  525400cc0001 525400dd0002 0806
  0001 0800 06 04 0002
  525400dd0002 0a010002
  525400cc0001 0a010001
`);

/** ICMP echo request 10.0.0.1 -> 10.0.0.2, id 0xf725, seq 1, 16 bytes "podnet echo test". */
export const ICMP_ECHO_REQUEST = hex(`
  525400bb0002 525400aa0001 0800
  4500 002c 4e28 4000 4001 d8a6 0a000001 0a000002     # IPv4: len 44, id 0x4e28, DF, ttl 64, ICMP, csum d8a6
  08 00 ebbe f725 0001                                # ICMP: echo request, csum ebbe, id f725, seq 1
  706f646e6574206563686f2074657374                    # "podnet echo test"
`);

/** The kernel's echo reply to ICMP_ECHO_REQUEST. */
export const ICMP_ECHO_REPLY = hex(`
  525400aa0001 525400bb0002 0800
  4500 002c af51 0000 4001 b77d 0a000002 0a000001
  00 00 f3be f725 0001
  706f646e6574206563686f2074657374
`);

/** UDP DNS query 10.0.0.1:40000 -> 10.0.0.2:53, "A? example.com", id 0x1234. */
export const UDP_DNS_QUERY = hex(`
  525400bb0002 525400aa0001 0800
  4500 0039 94a4 4000 4011 920d 0a000001 0a000002     # IPv4: len 57, id 0x94a4, DF, ttl 64, UDP
  9c40 0035 0025 6d8a                                 # UDP: 40000 -> 53, length 37, csum 6d8a
  1234 0100 0001 0000 0000 0000                       # DNS: id, RD, 1 question
  07 6578616d706c65 03 636f6d 00 0001 0001            # example.com A IN
`);

/** The kernel's ICMP port unreachable for UDP_DNS_QUERY: it quotes the whole 57-byte IP packet. */
export const ICMP_PORT_UNREACHABLE = hex(`
  525400aa0001 525400bb0002 0800
  45c0 0055 af60 0000 4001 b685 0a000002 0a000001     # IPv4: tos 0xc0, len 85, id 0xaf60, ICMP
  03 03 1136 0000 0000                                # ICMP: dest unreachable, port, csum 1136
  4500 0039 94a4 4000 4011 920d 0a000001 0a000002     # the query's IP header ...
  9c40 0035 0025 6d8a
  1234 0100 0001 0000 0000 0000
  07 6578616d706c65 03 636f6d 00 0001 0001            # ... through its last byte
`);

/** TCP SYN 10.0.0.1:40001 -> 10.0.0.2:8080 with MSS, SACK-permitted, timestamps, NOP, wscale. */
export const TCP_SYN = hex(`
  525400bb0002 525400aa0001 0800
  4500 003c 6e88 4000 4006 b831 0a000001 0a000002     # IPv4: len 60, id 0x6e88, DF, ttl 64, TCP
  9c41 1f90 7958c8fe 00000000 a0 02 faf0 8ff5 0000    # TCP: seq 2035861758, doff 10, SYN, win 64240
  020405b4 0402 080a e5a5c545 00000000 01 03030a      # mss 1460, sackOK, TS 3852846405/0, nop, ws 10
`);

/** The kernel's RST+ACK to TCP_SYN (nothing listening). */
export const TCP_RST = hex(`
  525400aa0001 525400bb0002 0800
  4500 0028 0000 4000 4006 26ce 0a000002 0a000001
  1f90 9c41 00000000 7958c8ff 50 14 0000 9da4 0000    # TCP: ack 2035861759, doff 5, RST|ACK, win 0
`);

/**
 * VXLAN as Linux emits it: `ip link add vx1 type vxlan id 1 dstport 8472 ...`, carrying an ICMP echo
 * request 10.1.0.1 -> 10.1.0.2 between the two vxlan devices (52:54:00:cc:00:01 -> 52:54:00:dd:00:02).
 * This kernel filled in the outer UDP checksum.
 */
export const VXLAN_ECHO = hex(`
  525400bb0002 525400aa0001 0800                      # outer Ethernet
  4500 005e 94c0 0000 4011 d1cc 0a000001 0a000002     # outer IPv4: len 94, UDP
  9a8b 2118 004a 785f                                 # UDP: 39563 -> 8472, length 74, csum 785f
  08 000000 000001 00                                 # VXLAN: flags I, VNI 1
  525400dd0002 525400cc0001 0800                      # inner Ethernet
  4500 002c ad10 4000 4001 79bc 0a010001 0a010002     # inner IPv4
  08 00 ebbd f726 0001                                # inner ICMP echo request
  706f646e6574206563686f2074657374
`);
