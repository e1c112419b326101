// relay: the least a per-host userspace forwarder can do, for `npm run bench:floor`.
//
// One process per host holds its pods' TAP devices and one UDP socket on the host's underlay address,
// and moves Ethernet frames with the fewest system calls a readiness loop allows: a frame read from a
// TAP goes to another local TAP (destination MAC learned from the frames the TAPs sent) or, VXLAN-framed
// (8-byte header, VNI 1), to the one peer host; a datagram from the peer is unframed and written to the
// TAP that owns its destination MAC (every local TAP for broadcast or an unknown MAC). No routing, no
// NAT, no batching: what is left of a packet's cost here is what any design with the same hops pays on
// this machine (a wake-up of the process, its system calls, the kernel work under them).
//
// The TAPs have podnet's offloads (a virtio-net header before every frame; checksum offload and TSO),
// so between two pods of one host a TCP super-frame goes on whole, header and all, as podnet's switch
// passes it: two copies (the read, the write), which is the same-host floor of any forwarder that sits
// between two TAPs. Towards the peer host a frame must be a datagram: a partial checksum is completed
// first, and a super-frame (which would need segmenting) is dropped (noted once on stderr), so TCP across hosts
// does not work through this relay; it is for ping and for TCP on one host.
//
//   relay <local-ip> <peer-ip> <udp-port> <tap-name>...
//
// It creates the TAPs in the namespace it runs in (the caller moves them into the pods' namespaces),
// prints "ready" on stdout, and runs until killed. Exits 1 with a message on any setup error.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_TAPS 8
#define MAX_MACS 64
#define FRAME_MAX 65536
#define VXLAN_HDR 8
#define VNET_HDR 10
// The virtio-net header (struct virtio_net_hdr): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
#define VNET_F_NEEDS_CSUM 1

static int taps[MAX_TAPS];
static int ntaps;
static int udp;
static struct sockaddr_in peer;
static uint8_t macs[MAX_MACS][6];
static int macTap[MAX_MACS];
static int nmacs;
static int superFrameNoted;

static void die(const char* what) {
  fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int openTap(const char* name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (strlen(name) >= IFNAMSIZ) {
    errno = ENAMETOOLONG;
    die(name);
  }
  strcpy(ifr.ifr_name, name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  int hdr = VNET_HDR;
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) die("TUNSETVNETHDRSZ");
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0) die("TUNSETOFFLOAD");
  return fd;
}

static void learn(const uint8_t* src, int tap) {
  if (src[0] & 1) return;
  for (int i = 0; i < nmacs; i++) {
    if (memcmp(macs[i], src, 6) == 0) {
      macTap[i] = tap;
      return;
    }
  }
  if (nmacs == MAX_MACS) return;
  memcpy(macs[nmacs], src, 6);
  macTap[nmacs++] = tap;
}

// The local TAP index owning `dst`, or -1 (broadcast, multicast, unknown).
static int lookup(const uint8_t* dst) {
  if (dst[0] & 1) return -1;
  for (int i = 0; i < nmacs; i++) {
    if (memcmp(macs[i], dst, 6) == 0) return macTap[i];
  }
  return -1;
}

// Writes `len` bytes at `p` (a virtio-net header, then the frame) to the TAP owning the frame's
// destination MAC, or to every TAP but `except` for broadcast and unknown MACs.
static void toTaps(const uint8_t* p, size_t len, int except) {
  int t = lookup(p + VNET_HDR);
  if (t >= 0) {
    if (t != except && write(taps[t], p, len) < 0 && errno != EAGAIN) perror("relay: write");
    return;
  }
  for (int i = 0; i < ntaps; i++) {
    if (i != except && write(taps[i], p, len) < 0 && errno != EAGAIN) perror("relay: write");
  }
}

// The RFC 1071 checksum of frame[start, end) folded into 16 bits and stored at frame[start + offset]
// (the pseudo-header sum the sender left there is part of the range).
static void completeChecksum(uint8_t* frame, size_t len, size_t start, size_t offset) {
  if (start + offset + 2 > len) return;
  uint64_t sum = 0;
  size_t i = start;
  for (; i + 1 < len; i += 2) sum += (uint32_t)(frame[i] << 8 | frame[i + 1]);
  if (i < len) sum += (uint32_t)(frame[i] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t c = (uint16_t)~sum;
  frame[start + offset] = (uint8_t)(c >> 8);
  frame[start + offset + 1] = (uint8_t)c;
}

// A frame read from a TAP lands at buf + 16 (its virtio-net header) + 10; the VXLAN header is then
// written over the header's last 8 bytes, right before the frame.
static uint8_t buf[16 + VNET_HDR + FRAME_MAX];

static void fromTap(int t) {
  static const uint8_t vxlan[VXLAN_HDR] = {0x08, 0, 0, 0, 0, 0, 1, 0};
  uint8_t* const p = buf + 16;
  uint8_t* const frame = p + VNET_HDR;
  for (;;) {
    ssize_t n = read(taps[t], p, VNET_HDR + FRAME_MAX);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      die("read tap");
    }
    if (n < VNET_HDR + 14) continue;
    const size_t len = (size_t)n - VNET_HDR;
    learn(frame + 6, t);
    int dst = lookup(frame);
    if (dst >= 0) {
      if (dst != t && write(taps[dst], p, (size_t)n) < 0 && errno != EAGAIN) perror("relay: write");
      continue;
    }
    if (frame[0] & 1) toTaps(p, (size_t)n, t);
    if (p[1] != 0) {  // gso_type: a super-frame, which would need segmenting
      if (!superFrameNoted) fprintf(stderr, "relay: dropping TSO super-frames towards the peer host (TCP across hosts is not supported)\n");
      superFrameNoted = 1;
      continue;
    }
    if (p[0] & VNET_F_NEEDS_CSUM) completeChecksum(frame, len, (size_t)(p[6] | p[7] << 8), (size_t)(p[8] | p[9] << 8));
    memcpy(frame - VXLAN_HDR, vxlan, VXLAN_HDR);
    if (sendto(udp, frame - VXLAN_HDR, VXLAN_HDR + len, 0, (struct sockaddr*)&peer, sizeof peer) < 0 && errno != EAGAIN) perror("relay: sendto");
  }
}

// A datagram lands at buf + 2: its VXLAN header at 2..10, the frame at 10; the frame goes to the TAP
// from buf with an all-zero virtio-net header (written over the VXLAN header once it was checked).
static void fromUdp(void) {
  for (;;) {
    ssize_t n = recv(udp, buf + 2, sizeof buf - 2, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      die("recv");
    }
    if (n < VXLAN_HDR + 14 || buf[2] != 0x08) continue;
    memset(buf, 0, VNET_HDR);
    toTaps(buf, (size_t)n - VXLAN_HDR + VNET_HDR, -1);
  }
}

int main(int argc, char** argv) {
  if (argc < 5 || argc - 4 > MAX_TAPS) {
    fprintf(stderr, "usage: relay <local-ip> <peer-ip> <udp-port> <tap-name>... (1-%d TAPs)\n", MAX_TAPS);
    return 1;
  }
  struct sockaddr_in local;
  memset(&local, 0, sizeof local);
  memset(&peer, 0, sizeof peer);
  local.sin_family = peer.sin_family = AF_INET;
  local.sin_port = peer.sin_port = htons((uint16_t)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[1], &local.sin_addr) != 1 || inet_pton(AF_INET, argv[2], &peer.sin_addr) != 1) {
    fprintf(stderr, "relay: bad address %s or %s\n", argv[1], argv[2]);
    return 1;
  }
  udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp < 0) die("socket");
  if (bind(udp, (struct sockaddr*)&local, sizeof local) < 0) die("bind");
  for (int i = 4; i < argc; i++) taps[ntaps++] = openTap(argv[i]);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.u32 = MAX_TAPS;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev) < 0) die("epoll_ctl");
  for (int i = 0; i < ntaps; i++) {
    ev.data.u32 = (uint32_t)i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, taps[i], &ev) < 0) die("epoll_ctl");
  }
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[MAX_TAPS + 1];
  for (;;) {
    int n = epoll_wait(ep, events, MAX_TAPS + 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      if (events[i].data.u32 == MAX_TAPS) fromUdp();
      else fromTap((int)events[i].data.u32);
    }
  }
}
