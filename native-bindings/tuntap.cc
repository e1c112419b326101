// podnet_tuntap: a thin N-API addon for Linux TUN/TAP devices.
//
// It does the syscalls and the batching; src/io/tuntap.ts owns everything else
// (option validation, defaults, error classes). The only module that loads it is
// src/io/tuntap.ts.
//
// JS surface (typed in src/io/tuntap.ts, interface NativeDevice):
//   new Device()
//   dev.open(name, mode 'tap'|'tun', flags {}) -> { name, fd }     throws errno-coded Error
//   dev.setRing(ring Buffer, lengths Int32Array, slots, slotSize, headroom, batch)
//   dev.start(onBatch(count), onError(err))   dev.stop()
//   dev.write(buf, off, len) -> boolean
//   dev.writeBatch(bufs, offs Uint32Array, lens Uint32Array, count) -> number written
//   dev.stats() -> { rxFrames, rxBatches, rxErrors, txFrames, txDropped, txErrors }
//   dev.close()                                                    idempotent
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
// Transmit path: write() per frame inside one native call; EAGAIN/ENOBUFS count as
// txDropped, other failures as txErrors; nothing on the data path throws.
//
// The `flags` object given to open() is where later options go (for example
// IFF_VNET_HDR for GSO super-packets, read into larger slots and the headroom);
// slot size and headroom are already parameters of setRing().

#include <napi.h>
#include <uv.h>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace {

// Rounds of `batch` reads per readiness event before yielding to the event loop.
constexpr int kMaxRounds = 4;
// napi handles opened by writeBatch before its handle scope is recycled.
constexpr uint32_t kWriteScopeFrames = 256;

std::string ErrnoName(int err) {
  char buf[64];
  uv_err_name_r(-err, buf, sizeof buf);
  if (std::strncmp(buf, "Unknown", 7) != 0) return buf;
  switch (err) {  // errnos the TUN driver returns that libuv has no name for
    case EBADFD: return "EBADFD";
    case EUNATCH: return "EUNATCH";
    default: return "E" + std::to_string(err);
  }
}

// An Error like Node's system errors: code (errno name), errno (positive Linux
// value), syscall, device, and message "<op> on <device>: <reason> (<code>)".
Napi::Error SystemError(Napi::Env env, int err, const std::string& op, const std::string& syscall,
                        const std::string& device, const char* reason = nullptr) {
  std::string code = ErrnoName(err);
  std::string msg = op + " on " + (device.empty() ? std::string("<any>") : device) + ": " +
                    (reason != nullptr ? reason : std::strerror(err)) + " (" + code + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("device", Napi::String::New(env, device));
  return e;
}

// Read errors after which the fd will never deliver frames again (the device was
// unregistered or the file detached). Anything else (ENOMEM, EFAULT, ...) loses
// one frame and reading goes on.
bool IsFatalReadError(int err) {
  return err == EBADFD || err == EBADF || err == EIO || err == ENODEV || err == ENXIO;
}

bool GetBytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  void* p = nullptr;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) return false;
  *data = static_cast<uint8_t*>(p);
  return true;
}

class Device;

// The libuv handle lives in its own allocation: uv_close() finishes on a later
// loop iteration, possibly after the Device has been garbage collected. The
// async cleanup hook keeps the environment alive until the handle is closed.
struct Poller {
  uv_poll_t handle;
  Device* owner = nullptr;  // cleared when closing starts
  napi_async_cleanup_hook_handle hook = nullptr;
};

class Device : public Napi::ObjectWrap<Device> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Device",
                       {
                           InstanceMethod<&Device::Open>("open"),
                           InstanceMethod<&Device::SetRing>("setRing"),
                           InstanceMethod<&Device::Start>("start"),
                           InstanceMethod<&Device::Stop>("stop"),
                           InstanceMethod<&Device::Write>("write"),
                           InstanceMethod<&Device::WriteBatch>("writeBatch"),
                           InstanceMethod<&Device::Stats>("stats"),
                           InstanceMethod<&Device::CloseJs>("close"),
                       });
  }

  explicit Device(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Device>(info) {}

  ~Device() override { Close(); }

  // Stops polling, closes the uv handle and the fd. Exactly once; later calls do
  // nothing. Runs from close(), the GC finalizer and environment cleanup.
  void Close() {
    if (closed_) return;
    closed_ = true;
    StopPolling();
    if (poller_ != nullptr) {
      poller_->owner = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&poller_->handle), OnPollerClosed);
      poller_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    ReleaseJs();
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
    short flags = IFF_NO_PI;
    if (mode == "tap") {
      flags |= IFF_TAP;
    } else if (mode == "tun") {
      flags |= IFF_TUN;
    } else {
      throw Napi::TypeError::New(env, "mode must be 'tap' or 'tun'");
    }
    // Kernel would silently truncate a long name; a NUL would cut it short.
    if (name.size() >= IFNAMSIZ) {
      throw SystemError(env, EINVAL, "TUNSETIFF", "ioctl(TUNSETIFF)", name,
                        "interface name longer than 15 bytes");
    }
    if (name.find('\0') != std::string::npos) {
      throw SystemError(env, EINVAL, "TUNSETIFF", "ioctl(TUNSETIFF)", name,
                        "interface name contains a NUL byte");
    }

    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw SystemError(env, errno, "open /dev/net/tun", "open", name);

    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = flags;
    if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      ::close(fd);
      throw SystemError(env, err, "TUNSETIFF", "ioctl(TUNSETIFF)", name);
    }
    char real[IFNAMSIZ + 1];
    std::memcpy(real, ifr.ifr_name, IFNAMSIZ);
    real[IFNAMSIZ] = '\0';

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ::close(fd);
      throw Napi::Error::New(env, "napi_get_uv_event_loop failed");
    }
    Poller* p = new Poller();
    int rc = uv_poll_init(loop, &p->handle, fd);
    if (rc < 0) {
      delete p;
      ::close(fd);
      throw SystemError(env, -rc, "uv_poll_init", "uv_poll_init", real);
    }
    p->handle.data = p;
    p->owner = this;
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, p, &p->hook) != napi_ok) p->hook = nullptr;

    opened_ = true;
    fd_ = fd;
    poller_ = p;
    name_ = real;

    Napi::Object out = Napi::Object::New(env);
    out.Set("name", Napi::String::New(env, name_));
    out.Set("fd", Napi::Number::New(env, fd_));
    return out;
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

  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || !opened_) throw Napi::Error::New(env, "device is closed");
    if (ring_ == nullptr) throw Napi::Error::New(env, "start before setRing");
    if (polling_) throw Napi::Error::New(env, "already started");
    if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "start(onBatch: function, onError: function)");
    }
    int rc = uv_poll_start(&poller_->handle, UV_READABLE, OnPoll);
    if (rc < 0) throw SystemError(env, -rc, "uv_poll_start", "uv_poll_start", name_);
    onBatch_.Reset(info[0].As<Napi::Function>(), 1);
    onError_.Reset(info[1].As<Napi::Function>(), 1);
    if (asyncCtx_ == nullptr) {
      napi_async_init(env, nullptr, Napi::String::New(env, "podnet:tuntap"), &asyncCtx_);
    }
    polling_ = true;
    Ref();  // a started device is not collected, even if JS forgets it
  }

  void Stop(const Napi::CallbackInfo&) { StopPolling(); }

  void CloseJs(const Napi::CallbackInfo&) { Close(); }

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

  // One frame. true when the kernel took it whole.
  bool WriteFrame(const uint8_t* data, size_t bufLen, uint32_t off, uint32_t len) {
    if (fd_ < 0 || static_cast<uint64_t>(off) + len > bufLen) {
      txErrors_++;
      return false;
    }
    for (;;) {
      ssize_t r = ::write(fd_, data + off, len);
      if (r == static_cast<ssize_t>(len)) {
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
    return Napi::Boolean::New(info.Env(), WriteFrame(data, bufLen, off, len));
  }

  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsTypedArray() ||
        !info[2].IsTypedArray() || !info[3].IsNumber() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      throw Napi::TypeError::New(
          env, "writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number)");
    }
    Napi::Array bufs = info[0].As<Napi::Array>();
    Napi::Uint32Array offs = info[1].As<Napi::Uint32Array>();
    Napi::Uint32Array lens = info[2].As<Napi::Uint32Array>();
    uint32_t count = info[3].As<Napi::Number>().Uint32Value();
    if (count > bufs.Length() || count > offs.ElementLength() || count > lens.ElementLength()) {
      throw Napi::RangeError::New(env, "writeBatch: count exceeds the arrays");
    }
    const uint32_t* o = offs.Data();
    const uint32_t* l = lens.Data();
    napi_value arr = bufs;
    uint32_t written = 0;
    for (uint32_t i = 0; i < count;) {
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      uint32_t end = count - i > kWriteScopeFrames ? i + kWriteScopeFrames : count;
      for (; i < end; i++) {
        napi_value el;
        uint8_t* data = nullptr;
        size_t bufLen = 0;
        if (napi_get_element(env, arr, i, &el) != napi_ok || !GetBytes(env, el, &data, &bufLen)) {
          txErrors_++;
          continue;
        }
        if (WriteFrame(data, bufLen, o[i], l[i])) written++;
      }
      napi_close_handle_scope(env, scope);
    }
    return Napi::Number::New(env, written);
  }

  // ---- receive ---------------------------------------------------------------

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    Poller* p = static_cast<Poller*>(handle->data);
    if (p->owner != nullptr) p->owner->OnReadable(status);
  }

  void OnReadable(int status) {
    napi_env env = Env();
    Napi::HandleScope scope(Env());
    // Holding our own object on the stack keeps `this` alive through JS calls,
    // whatever the callbacks do (stop(), close(), drop every reference).
    napi_value self = Value();
    depth_++;
    if (status < 0) {
      // libuv saw POLLERR and has already stopped the watcher. A read tells why
      // (EBADFD: the interface was deleted) and reports it; if it does not, report
      // the poll error so reading never stops silently.
      ReadRound(env, self);
      if (polling_) {
        rxErrors_++;
        Fail(env, self, -status, "poll", "uv_poll");
      }
    } else {
      for (int round = 0; round < kMaxRounds && polling_; round++) {
        if (!ReadRound(env, self)) break;
      }
    }
    depth_--;
    if (depth_ == 0 && releasePending_) ReleaseJs();
  }

  // Reads up to batch_ frames and hands them to JS. Returns true when the batch
  // filled (more frames may be waiting), false when drained, failed or stopped.
  bool ReadRound(napi_env env, napi_value self) {
    uint8_t* const ring = ring_;
    int32_t* const lengths = lengths_;
    const size_t slotSize = slotSize_;
    const size_t headroom = headroom_;
    const size_t cap = slotSize - headroom;
    const uint32_t batch = batch_;
    uint32_t n = 0;
    int fatal = 0;
    bool drained = false;
    // Bounded by attempts, not frames, so a run of errors cannot spin here.
    for (uint32_t attempt = 0; attempt < batch && n < batch; attempt++) {
      // The kernel truncates a frame to the space it is given, silently. One spare
      // byte after the slot tells a truncated frame from one that fits exactly;
      // a truncated frame is counted in rxErrors and its slot reused.
      struct iovec iov[2] = {{ring + n * slotSize + headroom, cap}, {&spill_, 1}};
      ssize_t r = ::readv(fd_, iov, 2);
      if (r > 0) {
        if (static_cast<size_t>(r) <= cap) {
          lengths[n++] = static_cast<int32_t>(r);
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
      napi_value argv[1];
      napi_create_uint32(env, n, &argv[0]);
      if (!CallJs(env, self, onBatch_.Value(), 1, argv)) return false;
    }
    if (fatal != 0) {
      if (polling_) Fail(env, self, fatal, "read", "readv");
      return false;
    }
    return !drained && polling_;
  }

  // The device can no longer be read: stop polling and tell JS through onError.
  void Fail(napi_env env, napi_value self, int err, const char* op, const char* syscall) {
    napi_value onError = onError_.IsEmpty() ? nullptr : static_cast<napi_value>(onError_.Value());
    StopPolling();
    if (onError == nullptr) return;
    napi_value argv[1] = {SystemError(Env(), err, op, syscall, name_).Value()};
    CallJs(env, self, onError, 1, argv);
  }

  // Calls into JS in a callback scope (microtasks and nextTicks run after it). An
  // exception from the callback becomes an uncaughtException; returns false then.
  bool CallJs(napi_env env, napi_value self, napi_value fn, size_t argc, napi_value* argv) {
    napi_value result;
    napi_status s = napi_make_callback(env, asyncCtx_, self, fn, argc, argv, &result);
    if (s == napi_ok) return true;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
    return false;
  }

  // ---- teardown ---------------------------------------------------------------

  void StopPolling() {
    if (!polling_) return;
    polling_ = false;
    if (poller_ != nullptr) uv_poll_stop(&poller_->handle);
    onBatch_.Reset();  // safe while the function runs: V8 holds it on the stack
    onError_.Reset();
    Unref();
  }

  // Drops references to JS values. Deferred while a callback is on the stack,
  // since napi_make_callback still uses the async context.
  void ReleaseJs() {
    if (depth_ > 0) {
      releasePending_ = true;
      return;
    }
    releasePending_ = false;
    onBatch_.Reset();
    onError_.Reset();
    ringRef_.Reset();
    lengthsRef_.Reset();
    ring_ = nullptr;
    lengths_ = nullptr;
    if (asyncCtx_ != nullptr) {
      napi_async_destroy(Env(), asyncCtx_);
      asyncCtx_ = nullptr;
    }
  }

  static void OnPollerClosed(uv_handle_t* handle) {
    Poller* p = static_cast<Poller*>(handle->data);
    if (p->hook != nullptr) napi_remove_async_cleanup_hook(p->hook);
    delete p;
  }

  // Environment teardown (process exit, worker exit): close now; the hook is
  // removed once libuv has closed the handle.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    Poller* p = static_cast<Poller*>(arg);
    if (p->owner != nullptr) p->owner->Close();
  }

  int fd_ = -1;
  bool opened_ = false;
  bool closed_ = false;
  bool polling_ = false;
  bool releasePending_ = false;
  int depth_ = 0;
  std::string name_;
  Poller* poller_ = nullptr;

  Napi::ObjectReference ringRef_;
  Napi::ObjectReference lengthsRef_;
  uint8_t* ring_ = nullptr;
  int32_t* lengths_ = nullptr;
  uint32_t slots_ = 0;
  uint32_t slotSize_ = 0;
  uint32_t headroom_ = 0;
  uint32_t batch_ = 0;
  uint8_t spill_ = 0;  // readv target for the byte that shows a frame was too big

  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  napi_async_context asyncCtx_ = nullptr;

  uint64_t rxFrames_ = 0;
  uint64_t rxBatches_ = 0;
  uint64_t rxErrors_ = 0;
  uint64_t txFrames_ = 0;
  uint64_t txDropped_ = 0;
  uint64_t txErrors_ = 0;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Device", Device::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(podnet_tuntap, Init)
