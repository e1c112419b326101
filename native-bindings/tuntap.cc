// podnet_tuntap: a thin N-API addon for Linux TUN/TAP devices (Device, here) and
// a batched UDP socket for the VXLAN overlay (UdpSocket, udp.cc).
//
// It does the syscalls and the batching; src/io/tuntap.ts owns everything else
// (option validation, defaults, error classes). The only module that loads it is
// src/io/addon.ts (for src/io/tuntap.ts and src/io/udpsocket.ts).
//
// JS surface (typed in src/io/tuntap.ts, interface NativeDevice):
//   new Device()
//   dev.open(name, mode 'tap'|'tun', flags { vnetHdr?, netns? }) -> { name, fd, vnetHdr }
//                                                                  throws errno-coded Error
//   dev.setPersist(on)                 TUNSETPERSIST: the interface outlives the fd (and the process)
//   dev.withdrawOffloads()             TUNSETOFFLOAD 0 (offload devices; no-op otherwise)
//   dev.setRing(ring Buffer, lengths Int32Array, slots, slotSize, headroom, batch)
//   dev.start(onBatch(count), onError(err))   dev.stop()
//   dev.readNow() -> boolean            one read round now (see PolledReader::ReadNowJs in addon.h)
//   dev.write(buf, off, len) -> boolean
//   dev.writeBatch(bufs, offs Uint32Array, lens Uint32Array, count[, bufIdx Uint32Array
//                  [, hdrs Uint8Array]])                           -> number written
//   dev.stats() -> { rxFrames, rxBatches, rxErrors, txFrames, txDropped, txErrors }
//   dev.close()                                                    idempotent
//   mapShared(path, bytes) -> ArrayBuffer       a file (in /dev/shm) mapped MAP_SHARED, see MapShared
//   copyBytes(dst, dstOff, src, srcOff, len)   memmove between Buffers, no JS allocation
//   sum16(buf, off, len, initial)              RFC 1071 sum of a region, 64-bit adds
//   moveSums(buf, src, srcStride, dst, dstStride, size, last, n, sums)  strided regions moved and summed (sums null: moved only)
//   replicate(buf, from, len, dst, stride, count)                       one region copied to strided places
//   segmentHeaders(buf, ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags, sums)  every segment's headers of a laid-out super-frame
//   continuations(buf, off, stride, n, last, ipAt, hdrLen, mss, verify)  how many datagrams of a run continue the first's TCP segment
//
// Receive path: a uv_poll_t watches the fd (level-triggered). On each readable
// event the addon readv()s frames straight into the JS-owned ring (slot i, at
// i*slotSize + headroom, capacity slotSize - headroom) and their lengths into the
// JS-owned Int32Array, until EAGAIN or `batch` frames, then calls onBatch(count)
// once. A full batch is followed by up to kMaxRounds - 1 more rounds before the
// event loop gets control back (uv_poll fires again if frames are left). No
// allocation, thread hop or N-API call per frame. A frame larger than its slot
// would be truncated by the kernel; it is detected and counted in rxErrors instead
// of being delivered.
//
// Transmit path: write() per frame inside one native call; EAGAIN/ENOBUFS count
// as txDropped, other failures as txErrors; nothing on the data path throws. With
// bufIdx, `bufs` lists each distinct buffer once and frame i uses bufs[bufIdx[i]]:
// one N-API lookup per distinct buffer instead of two N-API calls per frame.
//
// The reader lifecycle (uv_poll handle, start/stop/close, callbacks, teardown) and
// the error helpers are shared with the UDP socket, in addon.h.
//
// Offloads (flags.vnetHdr, TAP or TUN): IFF_VNET_HDR with a 10-byte virtio-net
// header, and TUNSETOFFLOAD with checksum offload and IPv4 TSO (+ECN), so the
// kernel behind the device hands over TCP super-frames (up to 64 KB) with partial
// checksums, and takes them. The header's csum_start counts from the frame's
// first byte: the Ethernet header on a TAP, the IP header on a TUN. On read the header lands in the last 10 bytes of the
// slot's headroom (the frame still starts at the headroom); on write each frame
// gets either the header in the 10 bytes before it in the caller's buffer (a frame
// passed on as read: hdrs[i] = 1) or an all-zero one (a plain frame), by writev.
// Slots must be large enough for a super-frame; that is the caller's geometry.

// Persistent devices (restart without losing a pod's interface): setPersist(true) marks the
// interface persistent, so closing the fd (a daemon stopping or killed) leaves it registered, with
// its addresses and routes, carrier off until a new fd attaches. A new daemon attaches again with
// open(name, ...) on the existing interface; flags.netns (a path such as /run/netns/NAME) opens
// /dev/net/tun from inside that network namespace, because the tun file belongs to the namespace it
// is opened in and TUNSETIFF looks the name up there (a pod's eth0 lives in the pod's namespace).
// Only the calling thread switches namespaces (setns), and only around the open(2).

#include "addon.h"

#include <fcntl.h>
#include <immintrin.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace {

using podnet::CoarseClockState;
using podnet::GetBytes;
using podnet::GetTypedArray;
using podnet::MonotonicNs;
using podnet::TheClock;
using podnet::TickClock;

// sizeof(struct virtio_net_hdr): no mergeable receive buffers.
constexpr size_t kVnetHdrLen = 10;

// Read errors after which the fd will never deliver frames again (the device was
// unregistered or the file detached). Anything else (ENOMEM, EFAULT, ...) loses
// one frame and reading goes on.
bool IsFatalReadError(int err) {
  return err == EBADFD || err == EBADF || err == EIO || err == ENODEV || err == ENXIO;
}

class Device : public podnet::PolledReader<Device> {
 public:
  static constexpr const char* kClosedMessage = "device is closed";
  static constexpr const char* kResourceName = "podnet:tuntap";

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Device",
                       {
                           InstanceMethod<&Device::Open>("open"),
                           InstanceMethod<&Device::SetRing>("setRing"),
                           InstanceMethod<&Device::Start>("start"),
                           InstanceMethod<&Device::Stop>("stop"),
                           InstanceMethod<&Device::Write>("write"),
                           InstanceMethod<&Device::WriteBatch>("writeBatch"),
                           InstanceMethod<&Device::ReadNow>("readNow"),
                           InstanceMethod<&Device::Stats>("stats"),
                           InstanceMethod<&Device::SetPersist>("setPersist"),
                           InstanceMethod<&Device::WithdrawOffloads>("withdrawOffloads"),
                           InstanceMethod<&Device::CloseMethod>("close"),
                       });
  }

  explicit Device(const Napi::CallbackInfo& info) : podnet::PolledReader<Device>(info) {}

  ~Device() override { Close(); }

  // ---- hooks for PolledReader ---------------------------------------------------

  bool HasRing() const { return ring_ != nullptr; }

  // POLLERR on a TUN/TAP fd means the device is gone (the read reported it).
  bool RecoverPollError() { return false; }

  void ReleaseRing() {
    ringRef_.Reset();
    lengthsRef_.Reset();
    ring_ = nullptr;
    lengths_ = nullptr;
  }

  Napi::Error ErrorFor(Napi::Env env, int err, const std::string& op, const std::string& syscall) {
    return podnet::SystemError(env, err, op, syscall, "device", name_);
  }

  // Reads up to batch_ frames and hands them to JS. Returns true when the batch
  // filled (more frames may be waiting), false when drained, failed or stopped.
  bool ReadRound(napi_env env, napi_value self) {
    uint8_t* const ring = ring_;
    int32_t* const lengths = lengths_;
    const size_t slotSize = slotSize_;
    const size_t headroom = headroom_;
    const size_t cap = slotSize - headroom;
    // With IFF_VNET_HDR every frame comes after its virtio-net header: read the header into the
    // last kVnetHdrLen bytes of the headroom, so the frame still starts at the slot's headroom.
    const size_t hdr = vnetHdr_ ? kVnetHdrLen : 0;
    const uint32_t batch = batch_;
    uint32_t n = 0;
    int fatal = 0;
    bool drained = false;
    // Bounded by attempts, not frames, so a run of errors cannot spin here.
    for (uint32_t attempt = 0; attempt < batch && n < batch; attempt++) {
      // The kernel truncates a frame to the space it is given, silently. One spare
      // byte after the slot tells a truncated frame from one that fits exactly;
      // a truncated frame is counted in rxErrors and its slot reused.
      uint8_t* const slot = ring + n * slotSize + headroom;
      struct iovec iov[3] = {{slot - hdr, hdr}, {slot, cap}, {&spill_, 1}};
      ssize_t r = hdr != 0 ? ::readv(fd_, iov, 3) : ::readv(fd_, iov + 1, 2);
      if (r > 0) {
        if (static_cast<size_t>(r) >= hdr && static_cast<size_t>(r) - hdr <= cap) {
          lengths[n++] = static_cast<int32_t>(static_cast<size_t>(r) - hdr);
        } else {
          rxErrors_++;
        }
        continue;
      }
      if (r == 0) {
        drained = true;
        break;
      }
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        drained = true;
        break;
      }
      if (err == EINTR) continue;
      rxErrors_++;
      if (IsFatalReadError(err)) {
        fatal = err;
        break;
      }
    }
    if (n > 0) {
      rxFrames_ += n;
      rxBatches_++;
      if (!CallBatch(env, self, n)) return false;
    }
    if (fatal != 0) {
      if (polling_) Fail(env, self, fatal, "read", "readv");
      return false;
    }
    return !drained && polling_;
  }

 private:
  // ---- setup (throws) -------------------------------------------------------

  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (opened_) throw Napi::Error::New(env, "device already opened");
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject()) {
      throw Napi::TypeError::New(env, "open(name: string, mode: 'tap' | 'tun', flags: object)");
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    std::string mode = info[1].As<Napi::String>().Utf8Value();
    Napi::Value vnetOpt = info[2].As<Napi::Object>().Get("vnetHdr");
    const bool vnet = vnetOpt.IsBoolean() && vnetOpt.As<Napi::Boolean>().Value();
    short flags = IFF_NO_PI;
    if (mode == "tap") {
      flags |= IFF_TAP;
    } else if (mode == "tun") {
      flags |= IFF_TUN;
    } else {
      throw Napi::TypeError::New(env, "mode must be 'tap' or 'tun'");
    }
    if (vnet) flags |= IFF_VNET_HDR;
    // Kernel would silently truncate a long name; a NUL would cut it short.
    if (name.size() >= IFNAMSIZ) {
      throw podnet::SystemError(env, EINVAL, "TUNSETIFF", "ioctl(TUNSETIFF)", "device", name,
                                "interface name longer than 15 bytes");
    }
    if (name.find('\0') != std::string::npos) {
      throw podnet::SystemError(env, EINVAL, "TUNSETIFF", "ioctl(TUNSETIFF)", "device", name,
                                "interface name contains a NUL byte");
    }

    Napi::Value nsOpt = info[2].As<Napi::Object>().Get("netns");
    int fd = nsOpt.IsString() ? OpenTunIn(env, nsOpt.As<Napi::String>().Utf8Value(), name)
                              : ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw podnet::SystemError(env, errno, "open /dev/net/tun", "open", "device", name);

    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = flags;
    if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      ::close(fd);
      throw podnet::SystemError(env, err, "TUNSETIFF", "ioctl(TUNSETIFF)", "device", name);
    }
    char real[IFNAMSIZ + 1];
    std::memcpy(real, ifr.ifr_name, IFNAMSIZ);
    real[IFNAMSIZ] = '\0';
    name_ = real;
    if (vnet) {
      // A 10-byte header (no mergeable buffers), and what the device offers the stack behind it:
      // checksum offload and TSO for IPv4 (with ECN), so the pod's kernel hands over TCP
      // super-frames of up to 64 KB with a partial checksum instead of segmenting them.
      int hdrLen = static_cast<int>(kVnetHdrLen);
      const unsigned long offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN;
      if (::ioctl(fd, TUNSETVNETHDRSZ, &hdrLen) < 0 || ::ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
        int err = errno;
        ::close(fd);
        throw podnet::SystemError(env, err, "TUNSETOFFLOAD", "ioctl(TUNSETOFFLOAD)", "device", name_);
      }
      vnetHdr_ = true;
    }

    Attach(env, fd);  // closes fd if it throws

    Napi::Object out = Napi::Object::New(env);
    out.Set("name", Napi::String::New(env, name_));
    out.Set("fd", Napi::Number::New(env, fd_));
    out.Set("vnetHdr", Napi::Boolean::New(env, vnetHdr_));
    return out;
  }

  // open("/dev/net/tun") from inside the network namespace at `path`; this thread returns to its own
  // namespace before this returns (a failure to return is fatal: the thread would stay in the pod).
  static int OpenTunIn(Napi::Env env, const std::string& path, const std::string& name) {
    int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) throw podnet::SystemError(env, errno, "open own netns", "open", "device", name);
    int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      int err = errno;
      ::close(self);
      throw podnet::SystemError(env, err, "open netns " + path, "open", "device", name);
    }
    if (::setns(target, CLONE_NEWNET) < 0) {
      int err = errno;
      ::close(self);
      ::close(target);
      throw podnet::SystemError(env, err, "setns " + path, "setns", "device", name);
    }
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    int err = errno;
    if (::setns(self, CLONE_NEWNET) < 0) ::abort();
    ::close(self);
    ::close(target);
    errno = err;
    return fd;
  }

  void SetPersist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(env, "setPersist(on: boolean)");
    if (fd_ < 0) throw Napi::Error::New(env, kClosedMessage);
    if (::ioctl(fd_, TUNSETPERSIST, info[0].As<Napi::Boolean>().Value() ? 1 : 0) < 0) {
      throw podnet::SystemError(env, errno, "TUNSETPERSIST", "ioctl(TUNSETPERSIST)", "device", name_);
    }
  }

  // TUNSETOFFLOAD 0: the device stops offering checksum offload and TSO to the stack behind it.
  // For a persistent device about to be let go, so that whatever attaches to it next (an older
  // release, without virtio-net headers) is handed plain packets, not 64 KB super-frames.
  void WithdrawOffloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) throw Napi::Error::New(env, kClosedMessage);
    if (!vnetHdr_) return;
    if (::ioctl(fd_, TUNSETOFFLOAD, 0UL) < 0) {
      throw podnet::SystemError(env, errno, "TUNSETOFFLOAD", "ioctl(TUNSETOFFLOAD)", "device", name_);
    }
  }

  void SetRing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (polling_) throw Napi::Error::New(env, "setRing while started");
    if (info.Length() < 6 || !info[0].IsBuffer() || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(
          env, "setRing(ring: Buffer, lengths: Int32Array, slots, slotSize, headroom, batch)");
    }
    for (size_t i = 2; i < 6; i++) {
      if (!info[i].IsNumber()) throw Napi::TypeError::New(env, "setRing: sizes must be numbers");
    }
    uint32_t slots = info[2].As<Napi::Number>().Uint32Value();
    uint32_t slotSize = info[3].As<Napi::Number>().Uint32Value();
    uint32_t headroom = info[4].As<Napi::Number>().Uint32Value();
    uint32_t batch = info[5].As<Napi::Number>().Uint32Value();
    auto ring = info[0].As<Napi::Buffer<uint8_t>>();
    auto lengths = info[1].As<Napi::Int32Array>();
    if (slots == 0 || slotSize == 0 || headroom >= slotSize || batch == 0 || batch > slots ||
        (vnetHdr_ && headroom < kVnetHdrLen) ||
        static_cast<uint64_t>(slots) * slotSize > ring.Length() || lengths.ElementLength() < batch) {
      throw Napi::RangeError::New(env, "setRing: ring geometry does not fit the buffers");
    }
    ringRef_.Reset(ring, 1);
    lengthsRef_.Reset(lengths, 1);
    ring_ = ring.Data();
    lengths_ = lengths.Data();
    slots_ = slots;
    slotSize_ = slotSize;
    headroom_ = headroom;
    batch_ = batch;
  }

  // N-API needs pointers to Device's own members.
  void Start(const Napi::CallbackInfo& info) { StartJs(info); }
  Napi::Value ReadNow(const Napi::CallbackInfo& info) { return ReadNowJs(info); }
  void Stop(const Napi::CallbackInfo& info) { StopJs(info); }
  void CloseMethod(const Napi::CallbackInfo& info) { CloseJs(info); }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rxFrames", Napi::Number::New(env, static_cast<double>(rxFrames_)));
    o.Set("rxBatches", Napi::Number::New(env, static_cast<double>(rxBatches_)));
    o.Set("rxErrors", Napi::Number::New(env, static_cast<double>(rxErrors_)));
    o.Set("txFrames", Napi::Number::New(env, static_cast<double>(txFrames_)));
    o.Set("txDropped", Napi::Number::New(env, static_cast<double>(txDropped_)));
    o.Set("txErrors", Napi::Number::New(env, static_cast<double>(txErrors_)));
    return o;
  }

  // ---- transmit (never throws for a frame) ---------------------------------

  // One frame. true when the kernel took it whole. With IFF_VNET_HDR the frame goes after a
  // virtio-net header: its own, in the kVnetHdrLen bytes before it in the buffer (`hdrInBuf`, a
  // frame passed on as it was read), or an all-zero one (a plain frame: no GSO, checksum done).
  bool WriteFrame(const uint8_t* data, size_t bufLen, uint32_t off, uint32_t len, bool hdrInBuf) {
    if (fd_ < 0 || static_cast<uint64_t>(off) + len > bufLen || (vnetHdr_ && hdrInBuf && off < kVnetHdrLen)) {
      txErrors_++;
      return false;
    }
    static const uint8_t kZeroHdr[kVnetHdrLen] = {};
    struct iovec iov[2] = {{const_cast<uint8_t*>(hdrInBuf ? data + off - kVnetHdrLen : kZeroHdr), kVnetHdrLen},
                           {const_cast<uint8_t*>(data + off), len}};
    const size_t want = vnetHdr_ ? len + kVnetHdrLen : len;
    for (;;) {
      ssize_t r = vnetHdr_ ? ::writev(fd_, iov, 2) : ::write(fd_, data + off, len);
      if (r == static_cast<ssize_t>(want)) {
        txFrames_++;
        return true;
      }
      if (r >= 0) {  // TUN/TAP writes are all or nothing; count a short one as an error
        txErrors_++;
        return false;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        txDropped_++;
      } else {
        txErrors_++;
      }
      return false;
    }
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    uint8_t* data = nullptr;
    size_t bufLen = 0;
    if (info.Length() < 3 || !GetBytes(env, info[0], &data, &bufLen) || !info[1].IsNumber() ||
        !info[2].IsNumber()) {
      throw Napi::TypeError::New(info.Env(), "write(buf: Buffer, off: number, len: number)");
    }
    uint32_t off = info[1].As<Napi::Number>().Uint32Value();
    uint32_t len = info[2].As<Napi::Number>().Uint32Value();
    return Napi::Boolean::New(info.Env(), WriteFrame(data, bufLen, off, len, false));
  }

  // writeBatch(bufs, offs, lens, count[, bufIdx[, hdrs]]): frame i is
  // bufs[i][offs[i], offs[i]+lens[i]), or with bufIdx (a Uint32Array) the same
  // range of bufs[bufIdx[i]]: bufs then holds each distinct buffer once, and each
  // is resolved once per call instead of once per frame (BufferTable). hdrs (a
  // Uint8Array, IFF_VNET_HDR devices): hdrs[i] = 1 when frame i's virtio-net header
  // is in the buffer just before it; otherwise a zero header is written.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t* o = nullptr;
    uint32_t* l = nullptr;
    uint32_t* idx = nullptr;
    uint8_t* hdrs = nullptr;
    size_t nOffs = 0, nLens = 0, nIdx = 0, nHdrs = 0;
    bool indexed = info.Length() >= 5 && !info[4].IsUndefined() && !info[4].IsNull();
    bool withHdrs = info.Length() >= 6 && !info[5].IsUndefined() && !info[5].IsNull();
    if (info.Length() < 4 || !info[0].IsArray() || !podnet::GetU32Array(env, info[1], &o, &nOffs) ||
        !podnet::GetU32Array(env, info[2], &l, &nLens) || !info[3].IsNumber() ||
        (indexed && !podnet::GetU32Array(env, info[4], &idx, &nIdx)) ||
        (withHdrs && !GetTypedArray(env, info[5], napi_uint8_array, &hdrs, &nHdrs))) {
      throw Napi::TypeError::New(env,
                                 "writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, "
                                 "count: number, bufIdx?: Uint32Array, hdrs?: Uint8Array)");
    }
    Napi::Array bufs = info[0].As<Napi::Array>();
    uint32_t count = info[3].As<Napi::Number>().Uint32Value();
    if ((!indexed && count > bufs.Length()) || (indexed && count > nIdx) || count > nOffs ||
        count > nLens || (withHdrs && count > nHdrs)) {
      throw Napi::RangeError::New(env, "writeBatch: count exceeds the arrays");
    }
    table_.Begin(env, bufs, bufs.Length(), idx);
    uint32_t written = 0;
    for (uint32_t i = 0; i < count; i++) {
      uint8_t* data = nullptr;
      size_t bufLen = 0;
      if (!table_.Get(i, &data, &bufLen)) {
        txErrors_++;
        continue;
      }
      if (WriteFrame(data, bufLen, o[i], l[i], hdrs != nullptr && hdrs[i] != 0)) written++;
    }
    table_.End();
    return Napi::Number::New(env, written);
  }

  std::string name_;
  podnet::BufferTable table_;

  Napi::ObjectReference ringRef_;
  Napi::ObjectReference lengthsRef_;
  uint8_t* ring_ = nullptr;
  int32_t* lengths_ = nullptr;
  uint32_t slots_ = 0;
  uint32_t slotSize_ = 0;
  uint32_t headroom_ = 0;
  uint32_t batch_ = 0;
  uint8_t spill_ = 0;  // readv target for the byte that shows a frame was too big
  bool vnetHdr_ = false;  // IFF_VNET_HDR: a virtio-net header before every frame, both ways

  uint64_t rxFrames_ = 0;
  uint64_t rxBatches_ = 0;
  uint64_t txFrames_ = 0;
  uint64_t txDropped_ = 0;
  uint64_t txErrors_ = 0;
};

// mapShared(path, bytes): opens (creating, mode 0600) the file at `path`, sets its size to `bytes`
// and maps it MAP_SHARED; returns an ArrayBuffer over the mapping (page-aligned, unmapped when the
// buffer is collected). Stores into it are stores into the file: a tmpfs file (/dev/shm) keeps what
// the process wrote even when it is killed, so a new process maps the same bytes again. What the
// bytes mean (header, version, checksum) is the caller's business.
struct Mapping {
  void* addr;
  size_t len;
};

void Unmap(napi_env, void*, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  ::munmap(m->addr, m->len);
  delete m;
}

napi_value MapShared(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  size_t pathLen = 0;
  double bytesD = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], nullptr, 0, &pathLen) != napi_ok ||
      napi_get_value_double(env, argv[1], &bytesD) != napi_ok) {
    napi_throw_type_error(env, nullptr, "mapShared(path: string, bytes: number)");
    return nullptr;
  }
  std::string path(pathLen, '\0');
  napi_get_value_string_utf8(env, argv[0], path.data(), pathLen + 1, &pathLen);
  if (!(bytesD >= 1 && bytesD <= static_cast<double>(1ULL << 40)) || path.find('\0') != std::string::npos) {
    napi_throw_range_error(env, nullptr, "mapShared: bytes must be 1..2^40 and path must not contain NUL");
    return nullptr;
  }
  const size_t bytes = static_cast<size_t>(bytesD);
  auto fail = [&](int err, const char* syscall) -> napi_value {
    Napi::Error e = podnet::SystemError(Napi::Env(env), err, "map", syscall, "path", path);
    e.ThrowAsJavaScriptException();
    return nullptr;
  };
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail(errno, "open");
  struct stat st;
  if (::fstat(fd, &st) < 0 || (static_cast<size_t>(st.st_size) != bytes && ::ftruncate(fd, static_cast<off_t>(bytes)) < 0)) {
    int err = errno;
    ::close(fd);
    return fail(err, "ftruncate");
  }
  void* addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file
  if (addr == MAP_FAILED) return fail(err, "mmap");
  Mapping* m = new Mapping{addr, bytes};
  napi_value ab;
  if (napi_create_external_arraybuffer(env, addr, bytes, Unmap, m, &ab) != napi_ok) {
    ::munmap(addr, bytes);
    delete m;
    napi_throw_error(env, nullptr, "mapShared: external ArrayBuffers are not supported here");
    return nullptr;
  }
  return ab;
}

// copyBytes(dst, dstOff, src, srcOff, len): memmove between two Buffers (or within one). JS has
// no allocation-free way to copy part of one Buffer into another: Buffer.prototype.copy and
// TypedArray.prototype.set both need a view of the source range, a new object per call. Raw
// N-API (no C++ wrapper objects); a range outside either buffer throws RangeError.
napi_value CopyBytes(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* dst = nullptr;
  uint8_t* src = nullptr;
  size_t dstLen = 0, srcLen = 0;
  uint32_t dstOff = 0, srcOff = 0, len = 0;
  if (argc < 5 || !GetBytes(env, argv[0], &dst, &dstLen) ||
      napi_get_value_uint32(env, argv[1], &dstOff) != napi_ok ||
      !GetBytes(env, argv[2], &src, &srcLen) ||
      napi_get_value_uint32(env, argv[3], &srcOff) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &len) != napi_ok) {
    napi_throw_type_error(env, nullptr,
                          "copyBytes(dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number)");
    return nullptr;
  }
  if (static_cast<uint64_t>(dstOff) + len > dstLen || static_cast<uint64_t>(srcOff) + len > srcLen) {
    napi_throw_range_error(env, nullptr, "copyBytes: range outside a buffer");
    return nullptr;
  }
  std::memmove(dst + dstOff, src + srcOff, len);
  return nullptr;
}

// stampTime(times, i): times[i] = the wall clock (CLOCK_REALTIME) in milliseconds, as a double with
// nanosecond digits. For a packet capture's timestamps: performance.now() and Date.now() return a
// double V8 boxes into a new HeapNumber per call; a store into a Float64Array from here allocates
// nothing.
napi_value StampTime(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  size_t length = 0;
  double* times = nullptr;
  uint32_t i = 0;
  if (argc < 2 || !GetTypedArray(env, argv[0], napi_float64_array, &times, &length) ||
      napi_get_value_uint32(env, argv[1], &i) != napi_ok) {
    napi_throw_type_error(env, nullptr, "stampTime(times: Float64Array, index: number)");
    return nullptr;
  }
  if (i >= length) {
    napi_throw_range_error(env, nullptr, "stampTime: index outside the array");
    return nullptr;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  times[i] = static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  return nullptr;
}

// bindClock(words: Int32Array, elapsedMs: number) makes `words` (length >= 2, over an ArrayBuffer
// of its own) the process's coarse clock (addon.h, TheClock) and writes the time into it. The first
// bind sets the origin `elapsedMs` before now (the clock may have run on a timer until the addon
// was loaded); binding again moves the words, never the origin, so time does not go back.
void ClearClock(void*) {
  CoarseClockState& c = TheClock();
  c.words = nullptr;
  c.env = nullptr;
  c.ref = nullptr;  // the environment is going: its references go with it
}

napi_value BindClock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  size_t length = 0;
  int32_t* words = nullptr;
  double elapsedMs = 0;
  if (argc < 2 || !GetTypedArray(env, argv[0], napi_int32_array, &words, &length) || length < 2 ||
      napi_get_value_double(env, argv[1], &elapsedMs) != napi_ok ||
      !(elapsedMs >= 0) || elapsedMs > 1e15) {
    napi_throw_type_error(env, nullptr, "bindClock(words: Int32Array of length >= 2, elapsedMs: number >= 0)");
    return nullptr;
  }
  CoarseClockState& c = TheClock();
  if (c.env != nullptr && c.env != env) {
    napi_throw_error(env, nullptr, "bindClock: the clock is bound in another environment");
    return nullptr;
  }
  napi_ref ref = nullptr;
  if (napi_create_reference(env, argv[0], 1, &ref) != napi_ok) return nullptr;
  if (c.ref != nullptr) napi_delete_reference(env, c.ref);
  if (c.env == nullptr) napi_add_env_cleanup_hook(env, ClearClock, nullptr);
  c.env = env;
  c.ref = ref;
  c.words = words;
  if (!c.hasOrigin) {
    c.originNs = MonotonicNs() - static_cast<int64_t>(elapsedMs * 1e6);
    c.hasOrigin = true;
  }
  TickClock();
  return nullptr;
}

// refreshClock(): the bound clock's words = now (for work that does not start in an onBatch).
napi_value RefreshClock(napi_env, napi_callback_info) {
  TickClock();
  return nullptr;
}

// sum16(buf, off, len, initial): the folded ones'-complement sum of buf[off, off+len) as big-endian
// 16-bit words (an odd last byte padded with zero), added to `initial` (RFC 1071), 0..0xffff. The
// one piece of arithmetic every byte of a segment goes through (checksums of the segments a
// super-frame is cut into, and of the segments joined into one): here it adds 32-bit words into
// 64 bits (AVX2 lanes where the CPU has them), many times what JavaScript's byte loop does. The
// result is what `packet/checksum.ts` sum16 gives.

// With AVX2 (chosen once, by what the CPU says), the bulk goes 64 bytes a step: 32-bit words
// zero-extended into 64-bit lanes (no carries to fold until the end; 2^32 words before a lane could
// overflow), about three times the scalar loop on data in cache. It leaves the tail (< 64 bytes).
__attribute__((target("avx2"))) uint64_t SumBulkAvx2(const uint8_t** pp, size_t* lenp) {
  const uint8_t* p = *pp;
  size_t len = *lenp;
  const __m256i zero = _mm256_setzero_si256();
  __m256i a = zero;
  __m256i b = zero;
  while (len >= 64) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    a = _mm256_add_epi64(a, _mm256_unpacklo_epi32(v, zero));
    b = _mm256_add_epi64(b, _mm256_unpackhi_epi32(v, zero));
    a = _mm256_add_epi64(a, _mm256_unpacklo_epi32(u, zero));
    b = _mm256_add_epi64(b, _mm256_unpackhi_epi32(u, zero));
    p += 64;
    len -= 64;
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a, b));
  *pp = p;
  *lenp = len;
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

bool HasAvx2() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") != 0);
  return has;
}

uint32_t Sum16(const uint8_t* p, size_t len, uint64_t acc) {
  // Native-order 32-bit words summed into 64 bits; one swap at the end gives big-endian words
  // (ones'-complement sums are byte-order independent, RFC 1071 section 2(B)).
  uint64_t s = 0;
  if (len >= 128 && HasAvx2()) s = SumBulkAvx2(&p, &len);
  while (len >= 32) {
    uint32_t w[8];
    std::memcpy(w, p, 32);
    s += static_cast<uint64_t>(w[0]) + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32;
    len -= 32;
  }
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    s += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    s += w;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    uint16_t w = 0;
    std::memcpy(&w, p, 1);  // the byte first, a zero after it, in memory order
    s += w;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  uint32_t be = static_cast<uint32_t>(((s & 0xff) << 8) | (s >> 8));  // memory order -> big-endian value
  acc += be;
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint32_t>(acc);
}

// Reads the arguments of a call shaped (buf: Buffer, n1, ..., nk: number, ...): argv[0]'s bytes and
// argv[1..k] as uint32 into v. False when there are fewer than `argc` arguments or one is of the wrong type.
bool BufferAndU32s(napi_env env, const napi_value* argv, size_t argc, size_t need, uint8_t** buf, size_t* len,
                   uint32_t* v, size_t k) {
  if (argc < need || !GetBytes(env, argv[0], buf, len)) return false;
  for (size_t i = 0; i < k; i++) {
    if (napi_get_value_uint32(env, argv[i + 1], &v[i]) != napi_ok) return false;
  }
  return true;
}

// Reads an argument that is a Uint32Array or null (*isNull). False when it is neither.
bool U32ArrayOrNull(napi_env env, napi_value v, uint32_t** u32, size_t* len, bool* isNull) {
  napi_valuetype t = napi_undefined;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  *isNull = t == napi_null;
  return *isNull || podnet::GetU32Array(env, v, u32, len);
}

napi_value Sum16Js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t v[3] = {0, 0, 0};  // off, len, initial
  if (!BufferAndU32s(env, argv, argc, 4, &buf, &bufLen, v, 3)) {
    napi_throw_type_error(env, nullptr, "sum16(buf: Buffer, off: number, len: number, initial: number)");
    return nullptr;
  }
  const uint32_t off = v[0], len = v[1], initial = v[2];
  if (static_cast<uint64_t>(off) + len > bufLen) {
    napi_throw_range_error(env, nullptr, "sum16: range outside the buffer");
    return nullptr;
  }
  napi_value out;
  napi_create_uint32(env, Sum16(buf + off, len, initial), &out);
  return out;
}

// moveSums(buf, src, srcStride, dst, dstStride, size, last, n, sums): n regions of one Buffer, region
// i at src + i*srcStride of `size` bytes (the last one `last`), each moved to dst + i*dstStride and
// its RFC 1071 sum (as sum16 gives it, initial 0) stored in sums[i]. src == dst with equal strides
// sums without moving; sums null moves without summing. For the segments of a TCP super-frame: their payloads laid out in place and
// summed in one call instead of two calls per segment (a copyWithin and a sum16). Regions move in
// the order that overwrites no region before it has moved: from the last when the last one moves
// forward (the first region may stay where it is).
// Every region must lie inside the buffer and `sums` hold n entries, or it throws RangeError having
// done nothing.
napi_value MoveSums(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t v[7] = {0, 0, 0, 0, 0, 0, 0};  // src, srcStride, dst, dstStride, size, last, n
  uint32_t* sums = nullptr;
  size_t sumsLen = 0;
  bool noSums = false;
  if (!BufferAndU32s(env, argv, argc, 9, &buf, &bufLen, v, 7) || !U32ArrayOrNull(env, argv[8], &sums, &sumsLen, &noSums)) {
    napi_throw_type_error(env, nullptr,
                          "moveSums(buf: Buffer, src, srcStride, dst, dstStride, size, last, n: number, sums: Uint32Array | null)");
    return nullptr;
  }
  const uint64_t src = v[0], srcStride = v[1], dst = v[2], dstStride = v[3], size = v[4], last = v[5], n = v[6];
  if (n == 0) return nullptr;
  // The furthest byte either side reaches: the last region, or the one before it when `last` is shorter.
  auto reach = [&](uint64_t base, uint64_t stride) {
    uint64_t end = base + (n - 1) * stride + last;
    if (n > 1) end = std::max(end, base + (n - 2) * stride + size);
    return end;
  };
  const bool summing = !noSums;
  if ((summing && sumsLen < n) || reach(src, srcStride) > bufLen || reach(dst, dstStride) > bufLen) {
    napi_throw_range_error(env, nullptr, "moveSums: a region outside the buffer, or sums shorter than n");
    return nullptr;
  }
  auto one = [&](uint64_t i) {
    const uint64_t len = i == n - 1 ? last : size;
    uint8_t* to = buf + dst + i * dstStride;
    const uint8_t* from = buf + src + i * srcStride;
    if (to != from) std::memmove(to, from, len);
    if (summing) sums[i] = Sum16(to, len, 0);
  };
  if (dst + (n - 1) * dstStride > src + (n - 1) * srcStride) {  // moving forward: the last region first
    for (uint64_t i = n; i-- > 0;) one(i);
  } else {
    for (uint64_t i = 0; i < n; i++) one(i);
  }
  return nullptr;
}

// replicate(buf, from, len, dst, stride, count): copies buf[from, from + len) to dst + i*stride for
// i in [0, count): the headers of a super-frame's first segment into every other segment, in one
// call. The copies must not overlap the source, and everything must lie inside the buffer
// (RangeError, nothing copied).
napi_value Replicate(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t v[5] = {0, 0, 0, 0, 0};  // from, len, dst, stride, count
  if (!BufferAndU32s(env, argv, argc, 6, &buf, &bufLen, v, 5)) {
    napi_throw_type_error(env, nullptr, "replicate(buf: Buffer, from, len, dst, stride, count: number)");
    return nullptr;
  }
  const uint64_t from = v[0], len = v[1], dst = v[2], stride = v[3], count = v[4];
  if (count == 0 || len == 0) return nullptr;
  const uint64_t end = dst + (count - 1) * stride + len;
  const bool apart = dst >= from + len || end <= from;
  if (from + len > bufLen || end > bufLen || !apart || (count > 1 && stride < len)) {
    napi_throw_range_error(env, nullptr, "replicate: a copy outside the buffer, or overlapping the source or another copy");
    return nullptr;
  }
  for (uint64_t i = 0; i < count; i++) std::memcpy(buf + dst + i * stride, buf + from, len);
  return nullptr;
}

// segmentHeaders(buf, ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags, sums): the headers of
// the n segments of a TCP super-frame laid out in place (segment i's IPv4 header at ip0 + i*stride,
// `ihl` bytes, its TCP header `doff` bytes after it, then mss payload bytes, the last segment's
// `last`), each a copy of segment 0's as it came: what packet/segment.ts writeTcpSegmentHeaders
// writes for segment i (lengths, ID ident + i, header checksum, sequence number seq + i*mss, flags
// with CWR on the first and FIN/PSH on the last only, and the TCP checksum from the payload's sum
// sums[i], or partial, the pseudo-header sum, with sums null). One call per super-frame instead of
// one JavaScript call per segment. Every header must lie inside the buffer and sums hold n entries
// (RangeError, nothing written).
// The folded sum of a short region (a header) as big-endian 16-bit words (an even length), added to
// `acc`: for headers, where Sum16's set-up costs more than the words.
inline uint32_t HeaderSum(const uint8_t* p, size_t len, uint32_t acc) {
  for (size_t i = 0; i + 1 < len; i += 2) acc += (static_cast<uint32_t>(p[i]) << 8) | p[i + 1];
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return acc;
}

napi_value SegmentHeaders(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t v[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags
  uint32_t* sums = nullptr;
  size_t sumsLen = 0;
  bool partial = false;
  if (!BufferAndU32s(env, argv, argc, 12, &buf, &bufLen, v, 10) || !U32ArrayOrNull(env, argv[11], &sums, &sumsLen, &partial)) {
    napi_throw_type_error(env, nullptr,
                          "segmentHeaders(buf: Buffer, ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags: number, "
                          "sums: Uint32Array | null)");
    return nullptr;
  }
  const uint64_t ip0 = v[0], stride = v[1], n = v[2], ihl = v[3], doff = v[4], mss = v[5], last = v[6];
  const uint32_t ident = v[7], seq = v[8], tflags = v[9];
  if (n == 0) return nullptr;
  if (ihl < 20 || doff < 20 || ip0 + (n - 1) * stride + ihl + doff > bufLen || (!partial && sumsLen < n)) {
    napi_throw_range_error(env, nullptr, "segmentHeaders: a header outside the buffer, or sums shorter than n");
    return nullptr;
  }
  auto put16 = [](uint8_t* p, uint32_t x) {
    p[0] = static_cast<uint8_t>(x >> 8);
    p[1] = static_cast<uint8_t>(x);
  };
  for (uint64_t i = 0; i < n; i++) {
    uint8_t* ip = buf + ip0 + i * stride;
    uint8_t* tcp = ip + ihl;
    const uint32_t tcpLen = static_cast<uint32_t>(doff + (i == n - 1 ? last : mss));
    put16(ip + 2, static_cast<uint32_t>(ihl) + tcpLen);
    put16(ip + 4, ident + static_cast<uint32_t>(i));
    put16(ip + 10, 0);
    put16(ip + 10, ~HeaderSum(ip, ihl, 0) & 0xffff);
    const uint32_t sq = seq + static_cast<uint32_t>(i * mss);
    tcp[4] = static_cast<uint8_t>(sq >> 24);
    tcp[5] = static_cast<uint8_t>(sq >> 16);
    tcp[6] = static_cast<uint8_t>(sq >> 8);
    tcp[7] = static_cast<uint8_t>(sq);
    uint32_t f = tflags;
    if (i > 0) f &= ~0x80u;          // CWR on the first only
    if (i < n - 1) f &= ~0x09u;      // FIN and PSH on the last only
    tcp[13] = static_cast<uint8_t>(f);
    put16(tcp + 16, 0);
    // The pseudo-header: addresses, protocol, TCP length.
    const uint32_t pseudo = HeaderSum(ip + 12, 8, 6 + tcpLen);
    if (partial) {
      put16(tcp + 16, pseudo);
    } else {
      put16(tcp + 16, ~HeaderSum(tcp, doff, pseudo + (sums[i] & 0xffff)) & 0xffff);
    }
  }
  return nullptr;
}

// continuations(buf, off, stride, n, last, ipAt, hdrLen, mss, verify): how many of datagrams 1..n-1
// of a receive run (datagram i at off + i*stride, `stride` bytes long, the last `last`) continue
// the TCP segment of datagram 0, counted from datagram 1 up to the first that does not. Datagram 0's
// first `hdrLen` bytes are the template (encapsulation up to `ipAt`, an option-less IPv4 header, the
// TCP header with its options); a continuation has the same bytes except the IPv4 total length (which
// must be its own length from `ipAt`), ID and header checksum (which must verify), and the TCP
// sequence number (datagram 0's + i*mss), window and checksum (which must verify when `verify` is 1; over
// the segment and the pseudo-header); it carries 1..mss payload bytes. The joiner
// (dataplane/gro.ts) has checked datagram 0 by Linux GRO's rules; equal headers keep every one of
// them, so it joins the continuations without looking at them. Nothing is written. Everything must
// lie inside the buffer (RangeError).
napi_value Continuations(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // off, stride, n, last, ipAt, hdrLen, mss, verify
  if (!BufferAndU32s(env, argv, argc, 9, &buf, &bufLen, v, 8)) {
    napi_throw_type_error(env, nullptr, "continuations(buf: Buffer, off, stride, n, last, ipAt, hdrLen, mss, verify: number)");
    return nullptr;
  }
  const uint64_t off = v[0], stride = v[1], n = v[2], last = v[3], ipAt = v[4], hdrLen = v[5], mss = v[6];
  const bool verify = v[7] != 0;
  uint32_t count = 0;
  napi_value out;
  if (n >= 2 && (off + (n - 1) * stride + last > bufLen || off + stride > bufLen || hdrLen > stride ||
                 ipAt + 40 > hdrLen)) {
    napi_throw_range_error(env, nullptr, "continuations: a datagram outside the buffer, or headers longer than one");
    return nullptr;
  }
  const uint8_t* t = buf + off;  // the template
  const uint8_t* tip = t + ipAt;
  if (n >= 2 && tip[0] == 0x45) {
    const uint64_t tcpAt = ipAt + 20;
    const uint32_t seq0 = (static_cast<uint32_t>(tip[24]) << 24) | (static_cast<uint32_t>(tip[25]) << 16) |
                          (static_cast<uint32_t>(tip[26]) << 8) | tip[27];
    // The pseudo-header's addresses and protocol (its length is each segment's own).
    const uint32_t addrs = HeaderSum(tip + 12, 8, 6);
    for (uint64_t i = 1; i < n; i++) {
      const uint64_t len = i == n - 1 ? last : stride;
      if (len <= hdrLen || len - hdrLen > mss || len - ipAt > 0xffff) break;
      const uint8_t* d = buf + off + i * stride;
      const uint8_t* ip = d + ipAt;
      // Equal but for the fields each segment has its own of: total length, ID, IP checksum, sequence
      // number, window (GRO keeps the first's, as Linux's does), TCP checksum.
      if (std::memcmp(d, t, ipAt + 2) != 0 || std::memcmp(ip + 6, tip + 6, 4) != 0 ||
          std::memcmp(ip + 12, tip + 12, 12) != 0 || std::memcmp(ip + 28, tip + 28, 6) != 0 ||
          std::memcmp(ip + 38, tip + 38, hdrLen - tcpAt - 18) != 0) {
        break;
      }
      if (((static_cast<uint64_t>(ip[2]) << 8) | ip[3]) != len - ipAt) break;
      if (HeaderSum(ip, 20, 0) != 0xffff) break;
      const uint32_t seq = (static_cast<uint32_t>(ip[24]) << 24) | (static_cast<uint32_t>(ip[25]) << 16) |
                           (static_cast<uint32_t>(ip[26]) << 8) | ip[27];
      if (seq != seq0 + static_cast<uint32_t>(i * mss)) break;
      if (verify) {
        const uint64_t tcpLen = len - tcpAt;
        if (Sum16(d + tcpAt, tcpLen, static_cast<uint64_t>(addrs) + tcpLen) != 0xffff) break;
      }
      count++;
    }
  }
  napi_create_uint32(env, count, &out);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  napi_value sum16;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "sum16", NAPI_AUTO_LENGTH, Sum16Js, nullptr, &sum16), exports);
  exports.Set("sum16", Napi::Value(env, sum16));
  napi_value moveSums;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "moveSums", NAPI_AUTO_LENGTH, MoveSums, nullptr, &moveSums), exports);
  exports.Set("moveSums", Napi::Value(env, moveSums));
  napi_value replicate;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "replicate", NAPI_AUTO_LENGTH, Replicate, nullptr, &replicate),
                       exports);
  exports.Set("replicate", Napi::Value(env, replicate));
  napi_value segmentHeaders;
  NAPI_THROW_IF_FAILED(env,
                       napi_create_function(env, "segmentHeaders", NAPI_AUTO_LENGTH, SegmentHeaders, nullptr, &segmentHeaders),
                       exports);
  exports.Set("segmentHeaders", Napi::Value(env, segmentHeaders));
  napi_value continuations;
  NAPI_THROW_IF_FAILED(env,
                       napi_create_function(env, "continuations", NAPI_AUTO_LENGTH, Continuations, nullptr, &continuations),
                       exports);
  exports.Set("continuations", Napi::Value(env, continuations));
  napi_value copyBytes;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "copyBytes", NAPI_AUTO_LENGTH, CopyBytes, nullptr, &copyBytes),
                       exports);
  exports.Set("copyBytes", Napi::Value(env, copyBytes));
  napi_value stampTime;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "stampTime", NAPI_AUTO_LENGTH, StampTime, nullptr, &stampTime),
                       exports);
  exports.Set("stampTime", Napi::Value(env, stampTime));
  napi_value bindClock;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "bindClock", NAPI_AUTO_LENGTH, BindClock, nullptr, &bindClock),
                       exports);
  exports.Set("bindClock", Napi::Value(env, bindClock));
  napi_value refreshClock;
  NAPI_THROW_IF_FAILED(env,
                       napi_create_function(env, "refreshClock", NAPI_AUTO_LENGTH, RefreshClock, nullptr, &refreshClock),
                       exports);
  exports.Set("refreshClock", Napi::Value(env, refreshClock));
  exports.Set("Device", Device::Define(env));
  exports.Set("UdpSocket", podnet::DefineUdpSocket(env));
  napi_value mapShared;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "mapShared", NAPI_AUTO_LENGTH, MapShared, nullptr, &mapShared),
                       exports);
  exports.Set("mapShared", Napi::Value(env, mapShared));
  return exports;
}

}  // namespace

NODE_API_MODULE(podnet_tuntap, Init)
