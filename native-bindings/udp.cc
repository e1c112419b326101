// UdpSocket: a batched, zero-copy IPv4 UDP socket for the VXLAN overlay, in the
// podnet_tuntap addon (exported next to Device). Typed in src/io/udpsocket.ts.
//
// JS surface:
//   new UdpSocket()
//   s.bind(ip, port, bufferBytes) -> { address, port, fd, rcvbuf, sndbuf }   throws errno-coded Error
//   s.setRing(ring Buffer, lengths Int32Array, srcIps Uint32Array,
//             srcPorts Uint16Array|Uint32Array, slots, slotSize, headroom, batch)
//   s.start(onBatch(count), onError(err))   s.stop()
//   s.openFlowSender()                                    throws errno-coded Error
//   s.sendBatch(bufs, offs Uint32Array, lens Uint32Array, dstIps Uint32Array,
//               dstPorts Uint16Array|Uint32Array, count[, bufIdx Uint32Array
//               [, srcPorts Uint16Array|Uint32Array]]) -> number sent
//   s.stats() -> { rxFrames, rxBatches, rxErrors, rxTruncated, rxCalls,
//                  txFrames, txDropped, txErrors, txCalls }
//   s.close()                                                                   idempotent
//
// bind: socket(AF_INET, SOCK_DGRAM, non-blocking), SO_RCVBUFFORCE/SO_SNDBUFFORCE
// to bufferBytes (plain SO_RCVBUF/SO_SNDBUF, capped by net.core.*mem_max, without
// CAP_NET_ADMIN), bind(ip:port); port 0 picks one. Errors carry code, errno,
// syscall and address ("ip:port").
//
// Receive path (the TUN reader's lifecycle, addon.h): on each readiness event
// recvmmsg(MSG_DONTWAIT) reads up to `batch` datagrams in one syscall straight
// into the JS-owned ring (datagram i at i*slotSize + headroom, capacity
// slotSize - headroom), with length, source address and source port per slot in
// the JS-owned arrays, then onBatch(count) is called once. Up to kMaxRounds
// batches per event. No allocation, thread hop or N-API call per datagram.
// A datagram larger than its slot (MSG_TRUNC) is dropped and counted in
// rxTruncated and rxErrors; the datagrams after it in the same recvmmsg are moved
// down one slot so a batch is always slots 0..count-1 (a copy, only on that rare
// path). A pending socket error (POLLERR) is cleared and counted; reading goes on.
//
// Transmit path: sendBatch builds up to kSendChunk messages and hands them to one
// sendmmsg. It is synchronous: the kernel has copied every datagram when it
// returns, so the caller may reuse its buffers at once. Nothing on the data path
// throws: a frame outside its buffer or refused by the kernel (EMSGSIZE, EINVAL,
// ENETUNREACH, EPERM, ...) counts in txErrors and sending goes on with the next;
// EAGAIN/ENOBUFS (send buffer full) counts that frame and every later one of the
// call in txDropped, since they would meet the same full buffer. With bufIdx,
// `bufs` lists each distinct buffer once and frame i uses bufs[bufIdx[i]].
//
// Per-datagram source ports (VXLAN's flow entropy, RFC 7348 section 5): a UDP
// socket sends from its one bound port, so openFlowSender() adds a send-only raw
// socket (IPPROTO_RAW, which implies IP_HDRINCL). sendBatch with srcPorts then
// writes, per message, a 28-byte IPv4 + UDP header into a preallocated slot and
// sends it with the payload as a two-part iovec: still one sendmmsg per 256
// datagrams and no copy in the addon. As Linux's vxlan does by default: TTL 64,
// DF clear, UDP checksum 0 (allowed over IPv4); the kernel fills in the IP ID,
// the header checksum and, when the socket is bound to 0.0.0.0, the source.

#include "addon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace podnet {
namespace {

// Messages per sendmmsg call (the kernel caps vlen at UIO_MAXIOV, 1024).
constexpr uint32_t kSendChunk = 256;
// Consecutive POLLERR events without a delivered batch before reading stops.
constexpr uint32_t kMaxPollErrors = 16;

// recvmmsg errors after which the fd will never deliver again.
bool IsFatalRecvError(int err) { return err == EBADF || err == ENOTSOCK || err == EINVAL; }

// Sets a socket buffer: the FORCE option first (root ignores net.core.*mem_max),
// else the plain one. Returns 0 or the errno of the plain option.
int SetBuffer(int fd, int forceOpt, int opt, int bytes) {
  if (::setsockopt(fd, SOL_SOCKET, forceOpt, &bytes, sizeof bytes) == 0) return 0;
  if (::setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes) == 0) return 0;
  return errno;
}

int GetIntOpt(int fd, int opt) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0) return -1;
  return v;
}

std::string IpString(uint32_t hostOrder) {
  return std::to_string(hostOrder >> 24) + "." + std::to_string((hostOrder >> 16) & 255) + "." +
         std::to_string((hostOrder >> 8) & 255) + "." + std::to_string(hostOrder & 255);
}

class UdpSocket : public PolledReader<UdpSocket> {
 public:
  static constexpr const char* kClosedMessage = "socket is closed";
  static constexpr const char* kResourceName = "podnet:udp";

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {
                           InstanceMethod<&UdpSocket::Bind>("bind"),
                           InstanceMethod<&UdpSocket::SetRing>("setRing"),
                           InstanceMethod<&UdpSocket::Start>("start"),
                           InstanceMethod<&UdpSocket::Stop>("stop"),
                           InstanceMethod<&UdpSocket::OpenFlowSender>("openFlowSender"),
                           InstanceMethod<&UdpSocket::OpenGsoSenders>("openGsoSenders"),
                           InstanceMethod<&UdpSocket::EnableGro>("enableGro"),
                           InstanceMethod<&UdpSocket::SendBatch>("sendBatch"),
                           InstanceMethod<&UdpSocket::Stats>("stats"),
                           InstanceMethod<&UdpSocket::CloseMethod>("close"),
                       });
  }

  explicit UdpSocket(const Napi::CallbackInfo& info) : PolledReader<UdpSocket>(info) {
    for (uint32_t m = 0; m < kSendChunk; m++) {
      std::memset(&sendAddrs_[m], 0, sizeof(sockaddr_in));
      sendAddrs_[m].sin_family = AF_INET;
      // Plain, raw (IPv4 + UDP header, then the payload) and GSO messages share slot m's address.
      InitMsg(sendMsgs_[m].msg_hdr, &sendAddrs_[m], &sendIovs_[m], 1);
      InitMsg(rawMsgs_[m].msg_hdr, &sendAddrs_[m], &rawIovs_[2 * m], 2);
      rawIovs_[2 * m].iov_base = rawHdrs_[m].data();
      rawIovs_[2 * m].iov_len = kRawHdrLen;
      msghdr& g = gsoMsgs_[m].msg_hdr;
      InitMsg(g, &sendAddrs_[m], &sendIovs_[m], 1);
      std::memset(gsoCtl_[m].data(), 0, kGsoCtlLen);
      g.msg_control = gsoCtl_[m].data();
      g.msg_controllen = kGsoCtlLen;
      cmsghdr* c = CMSG_FIRSTHDR(&g);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    }
    portToGso_.fill(0);
  }

  static void InitMsg(msghdr& h, sockaddr_in* addr, iovec* iov, size_t iovlen) {
    std::memset(&h, 0, sizeof h);
    h.msg_name = addr;
    h.msg_namelen = sizeof(sockaddr_in);
    h.msg_iov = iov;
    h.msg_iovlen = iovlen;
  }

  ~UdpSocket() override {
    CloseRaw();
    Close();
  }

  void CloseRaw() {
    if (rawFd_ >= 0) ::close(rawFd_);
    rawFd_ = -1;
    for (int fd : gsoFds_) ::close(fd);
    gsoFds_.clear();
    portToGso_.fill(0);
  }

  // ---- hooks for PolledReader ---------------------------------------------------

  bool HasRing() const { return ring_ != nullptr; }

  void ReleaseRing() {
    ringRef_.Reset();
    lengthsRef_.Reset();
    srcIpsRef_.Reset();
    srcPortsRef_.Reset();
    ring_ = nullptr;
    lengths_ = nullptr;
    srcIps_ = nullptr;
    srcPorts16_ = nullptr;
    srcPorts32_ = nullptr;
    segSizesRef_.Reset();
    segSizes_ = nullptr;
  }

  Napi::Error ErrorFor(Napi::Env env, int err, const std::string& op, const std::string& syscall) {
    return SystemError(env, err, op, syscall, "address", address_);
  }

  // POLLERR on a UDP socket is a pending socket error (sk_err), not a dead fd:
  // SO_ERROR clears it and polling resumes. A run of them without any datagram
  // delivered in between stops reading with onError.
  bool RecoverPollError() {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) return false;
    if (++pollErrors_ > kMaxPollErrors) return false;
    return RestartPoll();
  }

  // Reads up to batch_ datagrams (normally one recvmmsg) and hands them to JS.
  // Returns true when the batch filled (more may be waiting).
  bool ReadRound(napi_env env, napi_value self) {
    const uint32_t batch = batch_;
    const size_t slotSize = slotSize_;
    uint8_t* const data0 = ring_ + headroom_;
    uint32_t n = 0;
    int fatal = 0;
    bool drained = false;
    // Bounded by attempts, not datagrams, so a run of errors cannot spin here.
    for (uint32_t attempt = 0; attempt < batch && n < batch; attempt++) {
      const uint32_t want = batch - n;
      for (uint32_t j = n; j < batch; j++) {
        recvMsgs_[j].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        recvMsgs_[j].msg_hdr.msg_flags = 0;
        if (segSizes_ != nullptr) recvMsgs_[j].msg_hdr.msg_controllen = kGroCtlLen;
      }
      int r = ::recvmmsg(fd_, &recvMsgs_[n], want, MSG_DONTWAIT, nullptr);
      rxCalls_++;
      if (r < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
          drained = true;
          break;
        }
        if (err == EINTR) continue;
        rxErrors_++;  // a pending socket error, reported once; reading goes on
        if (IsFatalRecvError(err)) {
          fatal = err;
          break;
        }
        continue;
      }
      const uint32_t got = static_cast<uint32_t>(r);
      uint32_t w = n;
      for (uint32_t j = n; j < n + got; j++) {
        const mmsghdr& m = recvMsgs_[j];
        if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
          rxTruncated_++;
          rxErrors_++;
          continue;
        }
        const uint32_t len = m.msg_len;
        if (j != w) std::memmove(data0 + w * slotSize, data0 + j * slotSize, len);
        lengths_[w] = static_cast<int32_t>(len);
        if (segSizes_ != nullptr) segSizes_[w] = GroSegmentSize(m.msg_hdr);
        srcIps_[w] = ntohl(recvAddrs_[j].sin_addr.s_addr);
        const uint16_t port = ntohs(recvAddrs_[j].sin_port);
        if (srcPorts16_ != nullptr) {
          srcPorts16_[w] = port;
        } else {
          srcPorts32_[w] = port;
        }
        w++;
      }
      n = w;
      // recvmmsg stops early only when the queue ran dry (or on an error it
      // reports on the next call).
      if (got < want) {
        drained = true;
        break;
      }
    }
    if (n > 0) {
      pollErrors_ = 0;
      rxFrames_ += n;
      rxBatches_++;
      if (!CallBatch(env, self, n)) return false;
    }
    if (fatal != 0) {
      if (polling_) Fail(env, self, fatal, "recv", "recvmmsg");
      return false;
    }
    return !drained && polling_;
  }

 private:
  // N-API needs pointers to UdpSocket's own members.
  void Start(const Napi::CallbackInfo& info) { StartJs(info); }
  void Stop(const Napi::CallbackInfo& info) { StopJs(info); }
  void CloseMethod(const Napi::CallbackInfo& info) {
    CloseRaw();
    CloseJs(info);
  }

  // Opens the raw socket that sends datagrams with per-datagram source ports (needs CAP_NET_RAW).
  void OpenFlowSender(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, kClosedMessage);
    if (!opened_) throw Napi::Error::New(env, "openFlowSender before bind");
    if (rawFd_ >= 0) return;
    int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) throw SystemError(env, errno, "socket", "socket", "address", address_, "raw socket for per-flow source ports");
    if (bufferBytes_ > 0) {
      int err = SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bufferBytes_);
      if (err != 0) {
        ::close(fd);
        throw SystemError(env, err, "setsockopt", "setsockopt", "address", address_);
      }
    }
    rawFd_ = fd;
  }

  // Opens `count` send-only UDP sockets bound to the socket's address and an ephemeral port each,
  // and checks that the kernel takes UDP_SEGMENT on them (Linux 4.18+). A datagram sent with a
  // segment size leaves through the one whose port is its source port: one buffer of up to 64 KB
  // that the kernel cuts into datagrams of that size (UDP GSO), from that port. Returns the ports.
  Napi::Value OpenGsoSenders(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, kClosedMessage);
    if (!opened_) throw Napi::Error::New(env, "openGsoSenders before bind");
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "openGsoSenders(count: number)");
    const uint32_t count = info[0].As<Napi::Number>().Uint32Value();
    if (count == 0 || count > kMaxGsoSenders) throw Napi::RangeError::New(env, "openGsoSenders: count must be in [1, 250]");
    if (!gsoFds_.empty()) throw Napi::Error::New(env, "openGsoSenders: already open");
    Napi::Uint16Array ports = Napi::Uint16Array::New(env, count);
    auto fail = [&](int err, const char* syscall) {
      for (int fd : gsoFds_) ::close(fd);
      gsoFds_.clear();
      portToGso_.fill(0);
      return SystemError(env, err, syscall, syscall, "address", address_, "UDP GSO send socket");
    };
    for (uint32_t k = 0; k < count; k++) {
      int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) throw fail(errno, "socket");
      gsoFds_.push_back(fd);
      if (bufferBytes_ > 0) {
        int err = SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bufferBytes_);
        if (err != 0) throw fail(err, "setsockopt");
      }
      int probe = 1400;
      if (::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &probe, sizeof probe) < 0) throw fail(errno, "setsockopt");
      probe = 0;  // no default segment size: each datagram says its own
      ::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &probe, sizeof probe);
      sockaddr_in sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = localAddr_;
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) throw fail(errno, "bind");
      socklen_t len = sizeof sa;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) < 0) throw fail(errno, "getsockname");
      const uint16_t port = ntohs(sa.sin_port);
      portToGso_[port] = static_cast<uint8_t>(k + 1);
      ports[k] = port;
    }
    return ports;
  }

  // Turns on UDP_GRO (Linux 5.0+): the kernel may hand over a run of datagrams of one flow as one
  // buffer, all but the last of the same size; that size goes to segSizes[slot] (0: one datagram).
  // After setRing, before start; segSizes is JS-owned, one entry per ring slot of a batch.
  void EnableGro(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, kClosedMessage);
    if (!opened_ || ring_ == nullptr) throw Napi::Error::New(env, "enableGro before bind and setRing");
    if (polling_) throw Napi::Error::New(env, "enableGro while started");
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
        info[0].As<Napi::TypedArray>().ElementLength() < batch_) {
      throw Napi::TypeError::New(env, "enableGro(segSizes: Uint16Array of at least `batch` entries)");
    }
    int one = 1;
    if (::setsockopt(fd_, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) {
      throw SystemError(env, errno, "setsockopt", "setsockopt", "address", address_, "UDP_GRO");
    }
    auto arr = info[0].As<Napi::Uint16Array>();
    segSizesRef_.Reset(arr, 1);
    segSizes_ = arr.Data();
    groCtl_.assign(batch_, GroCtl{});
    for (uint32_t j = 0; j < batch_; j++) {
      recvMsgs_[j].msg_hdr.msg_control = groCtl_[j].b;
      recvMsgs_[j].msg_hdr.msg_controllen = kGroCtlLen;
    }
  }

  // The UDP_GRO segment size of a received message, 0 when it is one datagram.
  static uint16_t GroSegmentSize(const msghdr& ch) {
    msghdr& h = const_cast<msghdr&>(ch);
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int size = 0;
        std::memcpy(&size, CMSG_DATA(c), sizeof size);
        return size > 0 && size < 65536 ? static_cast<uint16_t>(size) : 0;
      }
    }
    return 0;
  }

  // ---- setup (throws) -------------------------------------------------------

  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, kClosedMessage);
    if (opened_) throw Napi::Error::New(env, "socket already bound");
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
      throw Napi::TypeError::New(env, "bind(ip: string, port: number, bufferBytes: number)");
    }
    std::string ip = info[0].As<Napi::String>().Utf8Value();
    double portD = info[1].As<Napi::Number>().DoubleValue();
    double bytesD = info[2].As<Napi::Number>().DoubleValue();
    if (!(portD >= 0 && portD <= 65535) || portD != static_cast<double>(static_cast<int>(portD))) {
      throw Napi::RangeError::New(env, "bind: port must be an integer in [0, 65535]");
    }
    if (!(bytesD >= 0 && bytesD <= (1 << 30))) {
      throw Napi::RangeError::New(env, "bind: bufferBytes must be in [0, 2^30]");
    }
    const uint16_t port = static_cast<uint16_t>(portD);
    const int bytes = static_cast<int>(bytesD);
    address_ = ip + ":" + std::to_string(port);

    sockaddr_in sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (ip.find('\0') != std::string::npos || ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) {
      throw SystemError(env, EINVAL, "bind", "inet_pton", "address", address_,
                        "not an IPv4 address");
    }

    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw SystemError(env, errno, "socket", "socket", "address", address_);
    if (bytes > 0) {
      int err = SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
      if (err == 0) err = SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
      if (err != 0) {
        ::close(fd);
        throw SystemError(env, err, "setsockopt", "setsockopt", "address", address_);
      }
    }
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) {
      int err = errno;
      ::close(fd);
      throw SystemError(env, err, "bind", "bind", "address", address_);
    }
    sockaddr_in local;
    socklen_t localLen = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &localLen) < 0) {
      int err = errno;
      ::close(fd);
      throw SystemError(env, err, "getsockname", "getsockname", "address", address_);
    }
    localAddr_ = local.sin_addr.s_addr;
    bufferBytes_ = bytes;
    const std::string localIp = IpString(ntohl(local.sin_addr.s_addr));
    const uint16_t localPort = ntohs(local.sin_port);
    address_ = localIp + ":" + std::to_string(localPort);
    const int rcvbuf = GetIntOpt(fd, SO_RCVBUF);
    const int sndbuf = GetIntOpt(fd, SO_SNDBUF);

    Attach(env, fd);  // closes fd if it throws

    Napi::Object out = Napi::Object::New(env);
    out.Set("address", Napi::String::New(env, localIp));
    out.Set("port", Napi::Number::New(env, localPort));
    out.Set("fd", Napi::Number::New(env, fd_));
    out.Set("rcvbuf", Napi::Number::New(env, rcvbuf));
    out.Set("sndbuf", Napi::Number::New(env, sndbuf));
    return out;
  }

  void SetRing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (polling_) throw Napi::Error::New(env, "setRing while started");
    uint32_t* srcIps = nullptr;
    size_t nSrcIps = 0;
    PortArray srcPorts;
    if (info.Length() < 8 || !info[0].IsBuffer() || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        !GetU32Array(env, info[2], &srcIps, &nSrcIps) || !srcPorts.Set(env, info[3])) {
      throw Napi::TypeError::New(
          env,
          "setRing(ring: Buffer, lengths: Int32Array, srcIps: Uint32Array, srcPorts: "
          "Uint16Array | Uint32Array, slots, slotSize, headroom, batch)");
    }
    for (size_t i = 4; i < 8; i++) {
      if (!info[i].IsNumber()) throw Napi::TypeError::New(env, "setRing: sizes must be numbers");
    }
    uint32_t slots = info[4].As<Napi::Number>().Uint32Value();
    uint32_t slotSize = info[5].As<Napi::Number>().Uint32Value();
    uint32_t headroom = info[6].As<Napi::Number>().Uint32Value();
    uint32_t batch = info[7].As<Napi::Number>().Uint32Value();
    auto ring = info[0].As<Napi::Buffer<uint8_t>>();
    auto lengths = info[1].As<Napi::Int32Array>();
    if (slots == 0 || slotSize == 0 || headroom >= slotSize || batch == 0 || batch > slots ||
        static_cast<uint64_t>(slots) * slotSize > ring.Length() || lengths.ElementLength() < batch ||
        nSrcIps < batch || srcPorts.length < batch) {
      throw Napi::RangeError::New(env, "setRing: ring geometry does not fit the buffers");
    }
    ringRef_.Reset(ring, 1);
    lengthsRef_.Reset(lengths, 1);
    srcIpsRef_.Reset(info[2].As<Napi::Object>(), 1);
    srcPortsRef_.Reset(info[3].As<Napi::Object>(), 1);
    ring_ = ring.Data();
    lengths_ = lengths.Data();
    srcIps_ = srcIps;
    srcPorts16_ = const_cast<uint16_t*>(srcPorts.u16);
    srcPorts32_ = const_cast<uint32_t*>(srcPorts.u32);
    slots_ = slots;
    slotSize_ = slotSize;
    headroom_ = headroom;
    batch_ = batch;

    // One message per slot, pointing at the slot's payload area and source address.
    recvMsgs_.assign(batch, mmsghdr{});
    recvIovs_.assign(batch, iovec{});
    recvAddrs_.assign(batch, sockaddr_in{});
    for (uint32_t j = 0; j < batch; j++) {
      recvIovs_[j].iov_base = ring_ + static_cast<size_t>(j) * slotSize + headroom;
      recvIovs_[j].iov_len = slotSize - headroom;
      msghdr& h = recvMsgs_[j].msg_hdr;
      h.msg_name = &recvAddrs_[j];
      h.msg_namelen = sizeof(sockaddr_in);
      h.msg_iov = &recvIovs_[j];
      h.msg_iovlen = 1;
    }
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    auto set = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
    set("rxFrames", rxFrames_);
    set("rxBatches", rxBatches_);
    set("rxErrors", rxErrors_);
    set("rxTruncated", rxTruncated_);
    set("rxCalls", rxCalls_);
    set("txFrames", txFrames_);
    set("txDropped", txDropped_);
    set("txErrors", txErrors_);
    set("txCalls", txCalls_);
    return o;
  }

  // ---- transmit (never throws for a datagram) --------------------------------

  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t *offs = nullptr, *lens = nullptr, *dstIps = nullptr, *idx = nullptr;
    size_t nOffs = 0, nLens = 0, nIps = 0, nIdx = 0;
    PortArray dstPorts;
    bool indexed = info.Length() >= 7 && !info[6].IsUndefined() && !info[6].IsNull();
    PortArray srcPorts;
    const bool flow = info.Length() >= 8 && !info[7].IsUndefined() && !info[7].IsNull();
    PortArray gsoSizes;
    const bool gso = info.Length() >= 9 && !info[8].IsUndefined() && !info[8].IsNull();
    if (info.Length() < 6 || !info[0].IsArray() || !GetU32Array(env, info[1], &offs, &nOffs) ||
        !GetU32Array(env, info[2], &lens, &nLens) || !GetU32Array(env, info[3], &dstIps, &nIps) ||
        !dstPorts.Set(env, info[4]) || !info[5].IsNumber() ||
        (indexed && !GetU32Array(env, info[6], &idx, &nIdx)) || (flow && !srcPorts.Set(env, info[7])) ||
        (gso && (!flow || !gsoSizes.Set(env, info[8])))) {
      throw Napi::TypeError::New(
          env,
          "sendBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, dstIps: Uint32Array, "
          "dstPorts: Uint16Array | Uint32Array, count: number, bufIdx?: Uint32Array, "
          "srcPorts?: Uint16Array | Uint32Array, gsoSizes?: Uint16Array | Uint32Array)");
    }
    Napi::Array bufs = info[0].As<Napi::Array>();
    const uint32_t count = info[5].As<Napi::Number>().Uint32Value();
    if ((!indexed && count > bufs.Length()) || (indexed && count > nIdx) || count > nOffs ||
        count > nLens || count > nIps || count > dstPorts.length || (flow && count > srcPorts.length) ||
        (gso && count > gsoSizes.length)) {
      throw Napi::RangeError::New(env, "sendBatch: count exceeds the arrays");
    }
    if (fd_ < 0) {
      txErrors_ += count;
      return Napi::Number::New(env, 0);
    }
    // Per-datagram source ports only through the raw socket; without it they are ignored. A
    // datagram with a segment size goes through the GSO socket bound to its source port.
    const bool raw = flow && rawFd_ >= 0;
    table_.Begin(env, bufs, bufs.Length(), idx);
    uint32_t sent = 0;
    uint32_t i = 0;
    bool full = false;
    while (i < count && !full) {
      // One run: consecutive datagrams that leave through the same fd, at most kSendChunk.
      int runFd = -1;
      bool runGso = false;
      uint32_t m = 0;
      for (; i < count && m < kSendChunk; i++) {
        uint8_t* data = nullptr;
        size_t bufLen = 0;
        if (!table_.Get(i, &data, &bufLen) || static_cast<uint64_t>(offs[i]) + lens[i] > bufLen) {
          txErrors_++;
          continue;
        }
        const uint16_t seg = gso ? gsoSizes.Get(i) : 0;
        int fd;
        if (seg != 0) {
          const uint8_t k = portToGso_[srcPorts.Get(i)];
          if (k == 0 || lens[i] > 65507) {  // no GSO socket on that port, or more than one UDP payload holds
            txErrors_++;
            continue;
          }
          fd = gsoFds_[k - 1];
        } else {
          fd = raw ? rawFd_ : fd_;
        }
        if (m > 0 && fd != runFd) break;  // the run ends here; datagram i starts the next one
        runFd = fd;
        runGso = seg != 0;
        const uint32_t dst = htonl(dstIps[i]);
        if (runGso) {
          sendIovs_[m].iov_base = data + offs[i];
          sendIovs_[m].iov_len = lens[i];
          std::memcpy(CMSG_DATA(CMSG_FIRSTHDR(&gsoMsgs_[m].msg_hdr)), &seg, sizeof seg);
        } else if (raw) {
          if (lens[i] > 65535 - kRawHdrLen) {
            txErrors_++;
            continue;
          }
          WriteRawHeader(rawHdrs_[m].data(), dst, srcPorts.Get(i), dstPorts.Get(i), lens[i]);
          rawIovs_[2 * m + 1].iov_base = data + offs[i];
          rawIovs_[2 * m + 1].iov_len = lens[i];
        } else {
          sendIovs_[m].iov_base = data + offs[i];
          sendIovs_[m].iov_len = lens[i];
        }
        sendAddrs_[m].sin_addr.s_addr = dst;
        sendAddrs_[m].sin_port = htons(dstPorts.Get(i));
        m++;
      }
      mmsghdr* msgs = runGso ? gsoMsgs_.data() : (runFd == rawFd_ && raw ? rawMsgs_.data() : sendMsgs_.data());
      uint32_t k = 0;
      while (k < m) {
        int r = ::sendmmsg(runFd, &msgs[k], m - k, MSG_DONTWAIT);
        txCalls_++;
        if (r > 0) {
          k += static_cast<uint32_t>(r);
          sent += static_cast<uint32_t>(r);
          txFrames_ += static_cast<uint32_t>(r);
          continue;
        }
        // sendmmsg reports an error only for the first message of a call: message k.
        int err = r < 0 ? errno : EAGAIN;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
          txDropped_ += (m - k) + (count - i);
          full = true;
          break;
        }
        txErrors_++;
        k++;
      }
    }
    table_.End();
    return Napi::Number::New(env, sent);
  }

  // IPv4 + UDP header of a raw-socket datagram (see the file comment). `dst` in network order.
  void WriteRawHeader(uint8_t* h, uint32_t dst, uint16_t srcPort, uint16_t dstPort, uint32_t payloadLen) const {
    const uint32_t total = kRawHdrLen + payloadLen;
    const uint32_t udpLen = 8 + payloadLen;
    h[0] = 0x45;  // version 4, IHL 5
    h[1] = 0;     // DSCP/ECN
    h[2] = static_cast<uint8_t>(total >> 8);
    h[3] = static_cast<uint8_t>(total);
    h[4] = h[5] = 0;    // ID: the kernel picks one
    h[6] = h[7] = 0;    // flags (DF clear) and fragment offset
    h[8] = 64;          // TTL
    h[9] = IPPROTO_UDP;
    h[10] = h[11] = 0;  // header checksum: the kernel computes it
    std::memcpy(h + 12, &localAddr_, 4);
    std::memcpy(h + 16, &dst, 4);
    h[20] = static_cast<uint8_t>(srcPort >> 8);
    h[21] = static_cast<uint8_t>(srcPort);
    h[22] = static_cast<uint8_t>(dstPort >> 8);
    h[23] = static_cast<uint8_t>(dstPort);
    h[24] = static_cast<uint8_t>(udpLen >> 8);
    h[25] = static_cast<uint8_t>(udpLen);
    h[26] = h[27] = 0;  // UDP checksum: none
  }

  static constexpr uint32_t kRawHdrLen = 28;
  static constexpr uint32_t kMaxGsoSenders = 250;
  static constexpr size_t kGsoCtlLen = CMSG_SPACE(sizeof(uint16_t));
  static constexpr size_t kGroCtlLen = CMSG_SPACE(sizeof(int));

  std::string address_;  // "ip:port", bound address once bound
  uint32_t localAddr_ = 0;  // bound address, network order (0: the kernel fills in the source)
  int bufferBytes_ = 0;
  int rawFd_ = -1;          // send-only raw socket for per-flow source ports, or -1
  BufferTable table_;
  uint32_t pollErrors_ = 0;

  Napi::ObjectReference ringRef_;
  Napi::ObjectReference lengthsRef_;
  Napi::ObjectReference srcIpsRef_;
  Napi::ObjectReference srcPortsRef_;
  uint8_t* ring_ = nullptr;
  int32_t* lengths_ = nullptr;
  uint32_t* srcIps_ = nullptr;
  uint16_t* srcPorts16_ = nullptr;
  uint32_t* srcPorts32_ = nullptr;
  uint32_t slots_ = 0;
  uint32_t slotSize_ = 0;
  uint32_t headroom_ = 0;
  uint32_t batch_ = 0;
  std::vector<mmsghdr> recvMsgs_;
  std::vector<iovec> recvIovs_;
  std::vector<sockaddr_in> recvAddrs_;

  std::array<mmsghdr, kSendChunk> sendMsgs_;
  std::array<iovec, kSendChunk> sendIovs_;
  std::array<sockaddr_in, kSendChunk> sendAddrs_;
  std::array<mmsghdr, kSendChunk> rawMsgs_;
  std::array<iovec, 2 * kSendChunk> rawIovs_;
  std::array<std::array<uint8_t, kRawHdrLen>, kSendChunk> rawHdrs_;
  std::array<mmsghdr, kSendChunk> gsoMsgs_;
  struct alignas(cmsghdr) GsoCtl {
    uint8_t b[kGsoCtlLen];
    uint8_t* data() { return b; }
  };
  std::array<GsoCtl, kSendChunk> gsoCtl_;  // one UDP_SEGMENT cmsg per message
  std::vector<int> gsoFds_;                                          // UDP GSO send sockets
  struct alignas(cmsghdr) GroCtl {
    uint8_t b[kGroCtlLen];
  };
  std::vector<GroCtl> groCtl_;  // one UDP_GRO cmsg buffer per receive message
  Napi::ObjectReference segSizesRef_;
  uint16_t* segSizes_ = nullptr;
  std::array<uint8_t, 65536> portToGso_;                             // source port -> index in gsoFds_ + 1, or 0

  uint64_t rxFrames_ = 0;
  uint64_t rxBatches_ = 0;
  uint64_t rxTruncated_ = 0;
  uint64_t rxCalls_ = 0;
  uint64_t txFrames_ = 0;
  uint64_t txDropped_ = 0;
  uint64_t txErrors_ = 0;
  uint64_t txCalls_ = 0;
};

}  // namespace

Napi::Function DefineUdpSocket(Napi::Env env) { return UdpSocket::Define(env); }

}  // namespace podnet
