// Shared pieces of the podnet_tuntap addon (tuntap.cc: Device, udp.cc: UdpSocket).
//
// - ErrnoName / SystemError: errors like Node's system errors (code, errno, syscall,
//   and what they are about: `device` for TUN/TAP, `address` for UDP).
// - BufferTable: resolves the Buffers of a batched write with as few N-API calls as
//   possible (once per distinct buffer when the caller passes an index array).
// - PolledReader<Derived>: the lifecycle both readers share: a uv_poll_t on a
//   non-blocking fd, start(onBatch, onError) / stop() / close(), bounded rounds of
//   batched reads per readiness event, one JS callback per batch, errors through
//   onError, teardown from close(), the GC finalizer and environment cleanup.
//   The derived class does the reading (ReadRound) and owns its ring.

#pragma once

#include <napi.h>
#include <uv.h>

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace podnet {

// Rounds of `batch` reads per readiness event before yielding to the event loop.
constexpr int kMaxRounds = 4;
// napi handles a batched write opens before its handle scope is recycled.
constexpr uint32_t kScopeHandles = 256;

inline std::string ErrnoName(int err) {
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
// value), syscall, `subjectKey` (device, address) = subject, and message
// "<op> on <subject>: <reason> (<code>)".
inline Napi::Error SystemError(Napi::Env env, int err, const std::string& op, const std::string& syscall,
                               const char* subjectKey, const std::string& subject,
                               const char* reason = nullptr) {
  std::string code = ErrnoName(err);
  std::string msg = op + " on " + (subject.empty() ? std::string("<any>") : subject) + ": " +
                    (reason != nullptr ? reason : std::strerror(err)) + " (" + code + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set(subjectKey, Napi::String::New(env, subject));
  return e;
}

inline bool GetBytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  void* p = nullptr;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) return false;
  *data = static_cast<uint8_t*>(p);
  return true;
}

// True when v is a typed array of type `want`; sets *data and *len (elements).
template <typename T>
inline bool GetTypedArray(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  void* p = nullptr;
  if (napi_get_typedarray_info(env, v, &type, len, &p, nullptr, nullptr) != napi_ok || type != want) return false;
  *data = static_cast<T*>(p);
  return true;
}

// True when v is a Uint32Array; sets *data and *len (elements).
inline bool GetU32Array(napi_env env, napi_value v, uint32_t** data, size_t* len) {
  return GetTypedArray(env, v, napi_uint32_array, data, len);
}

// A port array: Uint16Array or Uint32Array (ports live in the low 16 bits).
struct PortArray {
  const uint16_t* u16 = nullptr;
  const uint32_t* u32 = nullptr;
  size_t length = 0;

  bool Set(napi_env env, napi_value v) {
    bool is = false;
    if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
    napi_typedarray_type type;
    void* p = nullptr;
    if (napi_get_typedarray_info(env, v, &type, &length, &p, nullptr, nullptr) != napi_ok) return false;
    u16 = nullptr;
    u32 = nullptr;
    if (type == napi_uint16_array) {
      u16 = static_cast<const uint16_t*>(p);
    } else if (type == napi_uint32_array) {
      u32 = static_cast<const uint32_t*>(p);
    } else {
      return false;
    }
    return true;
  }
  uint16_t Get(size_t i) const { return u16 != nullptr ? u16[i] : static_cast<uint16_t>(u32[i]); }
};

// Resolves frame i's Buffer during one batched-write call.
//
// Per-frame mode (idx == nullptr): frame i's buffer is bufs[i]; two N-API calls
// per frame (napi_get_element + napi_get_buffer_info).
// Indexed mode: bufs holds distinct buffers and frame i uses bufs[idx[i]]. Each
// distinct buffer is resolved once per call, on first use; every other frame is a
// table lookup with no N-API call.
//
// Data pointers stay valid for the whole call: the buffers are held by the array,
// which the caller's arguments hold, and no JS runs during the call. Handle scopes
// are recycled every kScopeHandles resolutions. Not reentrant; one per object.
class BufferTable {
 public:
  ~BufferTable() { End(); }

  void Begin(napi_env env, napi_value bufs, uint32_t bufsLen, const uint32_t* idx) {
    env_ = env;
    bufs_ = bufs;
    bufsLen_ = bufsLen;
    idx_ = idx;
    if (idx != nullptr) {
      if (entries_.size() < bufsLen) entries_.resize(bufsLen);
      if (++stamp_ == 0) {  // wrapped: forget every old stamp
        for (Entry& e : entries_) e.stamp = 0;
        stamp_ = 1;
      }
    }
  }

  // Frame i's bytes; false when its buffer is missing or not a Buffer/Uint8Array.
  bool Get(uint32_t i, uint8_t** data, size_t* len) {
    if (idx_ == nullptr) return Resolve(i, data, len);
    uint32_t j = idx_[i];
    if (j >= bufsLen_) return false;
    Entry& e = entries_[j];
    if (e.stamp != stamp_) {
      e.stamp = stamp_;
      e.ok = Resolve(j, &e.data, &e.len);
    }
    *data = e.data;
    *len = e.len;
    return e.ok;
  }

  // Closes the open handle scope, if any. Call before returning to JS.
  void End() {
    if (scope_ != nullptr) {
      napi_close_handle_scope(env_, scope_);
      scope_ = nullptr;
    }
    inScope_ = 0;
  }

 private:
  struct Entry {
    uint8_t* data = nullptr;
    size_t len = 0;
    uint32_t stamp = 0;
    bool ok = false;
  };

  bool Resolve(uint32_t j, uint8_t** data, size_t* len) {
    if (j >= bufsLen_) return false;
    if (scope_ == nullptr && napi_open_handle_scope(env_, &scope_) != napi_ok) scope_ = nullptr;
    napi_value el;
    bool ok = napi_get_element(env_, bufs_, j, &el) == napi_ok && GetBytes(env_, el, data, len);
    if (!ok) {
      *data = nullptr;
      *len = 0;
    }
    if (++inScope_ >= kScopeHandles) End();
    return ok;
  }

  napi_env env_ = nullptr;
  napi_value bufs_ = nullptr;
  uint32_t bufsLen_ = 0;
  const uint32_t* idx_ = nullptr;
  napi_handle_scope scope_ = nullptr;
  uint32_t inScope_ = 0;
  std::vector<Entry> entries_;
  uint32_t stamp_ = 0;
};

// The libuv handle lives in its own allocation: uv_close() finishes on a later
// loop iteration, possibly after the owner has been garbage collected. The async
// cleanup hook keeps the environment alive until the handle is closed.
template <typename Owner>
struct Poller {
  uv_poll_t handle;
  Owner* owner = nullptr;  // cleared when closing starts
  napi_async_cleanup_hook_handle hook = nullptr;

  // A poll handle for fd on env's loop, or nullptr: *uvErr is then the negative
  // libuv error, or 0 when the loop itself was unavailable.
  static Poller* Create(napi_env env, int fd, Owner* owner, int* uvErr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      *uvErr = 0;
      return nullptr;
    }
    Poller* p = new Poller();
    int rc = uv_poll_init(loop, &p->handle, fd);
    if (rc < 0) {
      delete p;
      *uvErr = rc;
      return nullptr;
    }
    p->handle.data = p;
    p->owner = owner;
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, p, &p->hook) != napi_ok) p->hook = nullptr;
    return p;
  }

  int Start() { return uv_poll_start(&handle, UV_READABLE, OnPoll); }
  void Stop() { uv_poll_stop(&handle); }

  // Detaches from the owner and closes; libuv frees it in OnClosed.
  void Close() {
    owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle), OnClosed);
  }

 private:
  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    Poller* p = static_cast<Poller*>(h->data);
    if (p->owner != nullptr) p->owner->OnReadable(status);
  }

  static void OnClosed(uv_handle_t* h) {
    Poller* p = static_cast<Poller*>(h->data);
    if (p->hook != nullptr) napi_remove_async_cleanup_hook(p->hook);
    delete p;
  }

  // Environment teardown (process exit, worker exit): close now; the hook is
  // removed once libuv has closed the handle.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    Poller* p = static_cast<Poller*>(arg);
    if (p->owner != nullptr) p->owner->Close();
  }
};

// The data plane's coarse clock (src/util/clock.ts): two int32 words in a JS Int32Array, [0] whole
// milliseconds and [1] whole seconds since the first bindClock(), written here right before every
// onBatch and by refreshClock(). It replaces a 10 ms interval timer that woke every idle daemon 100
// times a second: time now moves when there is work to stamp and costs one vDSO clock_gettime per
// batch. One clock per process (one per environment would need a map; podnet runs one). The words
// live in an ArrayBuffer made by `new ArrayBuffer`, which V8 never moves; the reference keeps it
// alive, and the environment's cleanup hook clears the pointer before that memory can go.
struct CoarseClockState {
  int32_t* words = nullptr;
  napi_ref ref = nullptr;
  napi_env env = nullptr;
  int64_t originNs = 0;
  bool hasOrigin = false;
};

inline CoarseClockState& TheClock() {
  static CoarseClockState state;
  return state;
}

inline int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Brings the bound words up to date (nothing when none is bound). ms wraps like JS `| 0`.
inline void TickClock() {
  CoarseClockState& c = TheClock();
  if (c.words == nullptr) return;
  const int64_t ms = (MonotonicNs() - c.originNs) / 1000000;
  c.words[0] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(ms)));
  c.words[1] = static_cast<int32_t>(ms / 1000);
}

// The reader lifecycle shared by Device and UdpSocket. Derived provides:
//   bool ReadRound(napi_env env, napi_value self)  read up to a batch, call
//       CallBatch(); true when the batch filled and more may be waiting
//   void ReleaseRing()                             drop its ring references
//   bool HasRing() const
//   bool RecoverPollError()                        after POLLERR: true when it cleared
//       the cause and called RestartPoll() successfully; false stops with onError
//   Napi::Error ErrorFor(Napi::Env, int err, const std::string& op, const std::string& syscall)
//   static const char* kClosedMessage              "device is closed", ...
//   static const char* kResourceName               async resource name
// Derived's destructor must call Close() (its members are gone after it).
template <typename Derived>
class PolledReader : public Napi::ObjectWrap<Derived> {
 public:
  explicit PolledReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}

  // Stops polling, closes the uv handle and the fd. Exactly once; later calls do
  // nothing. Runs from close(), the GC finalizer and environment cleanup.
  void Close() {
    if (closed_) return;
    closed_ = true;
    StopPolling();
    if (poller_ != nullptr) {
      poller_->Close();
      poller_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    ReleaseJs();
  }

  // readNow(): one read round now, as a readable event would start it (onBatch called the same way),
  // for a caller that has just written to the device and knows the kernel behind it answers within
  // the write (a pod's stack replying to a ping or acknowledging data). Nothing when not started, or
  // when this reader's own batch is on the stack (its ring is in use): false then, true otherwise.
  Napi::Value ReadNowJs(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!polling_ || depth_ > 0) return Napi::Boolean::New(env, false);
    napi_value self = this->Value();
    depth_++;
    Self()->ReadRound(env, self);
    depth_--;
    if (depth_ == 0 && releasePending_) ReleaseJs();
    return Napi::Boolean::New(env, true);
  }

  void OnReadable(int status) {
    napi_env env = this->Env();
    Napi::HandleScope scope(this->Env());
    // Holding our own object on the stack keeps `this` alive through JS calls,
    // whatever the callbacks do (stop(), close(), drop every reference).
    napi_value self = this->Value();
    depth_++;
    if (status < 0) {
      // libuv saw POLLERR and has already stopped the watcher. A read tells why
      // (EBADFD: the interface was deleted) and reports it; if it does not, the
      // derived class may recover (a socket's pending error) or the poll error is
      // reported, so reading never stops silently.
      Self()->ReadRound(env, self);
      if (polling_) {
        rxErrors_++;
        if (!Self()->RecoverPollError()) Fail(env, self, -status, "poll", "uv_poll");
      }
    } else {
      for (int round = 0; round < kMaxRounds && polling_; round++) {
        if (!Self()->ReadRound(env, self)) break;
      }
    }
    depth_--;
    if (depth_ == 0 && releasePending_) ReleaseJs();
  }

 protected:
  Derived* Self() { return static_cast<Derived*>(this); }

  // Watches fd (already open, non-blocking) from now on; it is owned and closed
  // by this object. Throws (and closes fd) when libuv refuses.
  void Attach(Napi::Env env, int fd) {
    int uvErr = 0;
    Poller<Derived>* p = Poller<Derived>::Create(env, fd, Self(), &uvErr);
    if (p == nullptr) {
      ::close(fd);
      if (uvErr == 0) throw Napi::Error::New(env, "napi_get_uv_event_loop failed");
      throw Self()->ErrorFor(env, -uvErr, "uv_poll_init", "uv_poll_init");
    }
    opened_ = true;
    fd_ = fd;
    poller_ = p;
  }

  void StartJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || !opened_) throw Napi::Error::New(env, Derived::kClosedMessage);
    if (!Self()->HasRing()) throw Napi::Error::New(env, "start before setRing");
    if (polling_) throw Napi::Error::New(env, "already started");
    if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "start(onBatch: function, onError: function)");
    }
    int rc = poller_->Start();
    if (rc < 0) throw Self()->ErrorFor(env, -rc, "uv_poll_start", "uv_poll_start");
    onBatch_.Reset(info[0].As<Napi::Function>(), 1);
    onError_.Reset(info[1].As<Napi::Function>(), 1);
    if (asyncCtx_ == nullptr) {
      napi_async_init(env, nullptr, Napi::String::New(env, Derived::kResourceName), &asyncCtx_);
    }
    polling_ = true;
    this->Ref();  // a started reader is not collected, even if JS forgets it
  }

  // uv_poll_start again after libuv stopped the watcher on POLLERR.
  bool RestartPoll() { return polling_ && poller_ != nullptr && poller_->Start() == 0; }

  void StopJs(const Napi::CallbackInfo&) { StopPolling(); }
  void CloseJs(const Napi::CallbackInfo&) { Close(); }

  // onBatch(count) for a batch read into the ring. false when the callback threw
  // (the exception became an uncaughtException).
  bool CallBatch(napi_env env, napi_value self, uint32_t n) {
    TickClock();  // the batch's time, for Dataplane.tick
    napi_value argv[1];
    napi_create_uint32(env, n, &argv[0]);
    return CallJs(env, self, onBatch_.Value(), 1, argv);
  }

  // The fd can no longer be read: stop polling and tell JS through onError.
  void Fail(napi_env env, napi_value self, int err, const char* op, const char* syscall) {
    napi_value onError = onError_.IsEmpty() ? nullptr : static_cast<napi_value>(onError_.Value());
    StopPolling();
    if (onError == nullptr) return;
    napi_value argv[1] = {Self()->ErrorFor(this->Env(), err, op, syscall).Value()};
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

  void StopPolling() {
    if (!polling_) return;
    polling_ = false;
    if (poller_ != nullptr) poller_->Stop();
    onBatch_.Reset();  // safe while the function runs: V8 holds it on the stack
    onError_.Reset();
    this->Unref();
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
    Self()->ReleaseRing();
    if (asyncCtx_ != nullptr) {
      napi_async_destroy(this->Env(), asyncCtx_);
      asyncCtx_ = nullptr;
    }
  }

  int fd_ = -1;
  bool opened_ = false;
  bool closed_ = false;
  bool polling_ = false;
  uint64_t rxErrors_ = 0;

 private:
  bool releasePending_ = false;
  int depth_ = 0;
  Poller<Derived>* poller_ = nullptr;
  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  napi_async_context asyncCtx_ = nullptr;
};

// Defined in udp.cc; the module's Init (tuntap.cc) exports it.
Napi::Function DefineUdpSocket(Napi::Env env);

}  // namespace podnet
