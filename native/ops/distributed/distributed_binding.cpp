// Node-API binding of the data-parallel collectives (vp/dist.h): probe, init,
// info, in-place all-reduce / broadcast of a typed array (off the main thread,
// as Promises), barrier, abort, finalize. lib/distributed.ts is the only caller.
#include <functional>
#include <string>

#include "addon/addon.h"
#include "vp/dist.h"

namespace vpaddon {
namespace {

// Runs one collective on a worker thread; keeps the typed array alive meanwhile.
class DistJob : public Napi::AsyncWorker {
 public:
  DistJob(Napi::Env env, Napi::Value keep, std::function<vp::Status()> run)
      : Napi::AsyncWorker(env, "videoperceiver.dist"), deferred_(Napi::Promise::Deferred::New(env)), run_(std::move(run)) {
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { status_ = run_(); }
  void OnOK() override {
    Napi::Env env = Env();
    if (status_.ok()) {
      deferred_.Resolve(env.Undefined());
      return;
    }
    try {
      ThrowIfError(env, status_);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  std::function<vp::Status()> run_;
  vp::Status status_;
};

Napi::Object ProbeTo(Napi::Env env, const vp::dist::Probe& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("found", p.found);
  o.Set("library", p.library);
  o.Set("version", p.version);
  o.Set("reason", p.reason);
  return o;
}

Napi::Object InfoTo(Napi::Env env, const vp::dist::Info& i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("initialized", i.initialized);
  o.Set("rank", i.rank);
  o.Set("size", i.size);
  o.Set("localRank", i.local_rank);
  o.Set("backend", vp::dist::backend_name(i.backend));
  o.Set("ncclReason", i.nccl_reason);
  o.Set("mpiVersion", i.mpi_version);
  o.Set("ncclVersion", i.nccl_version);
  return o;
}

std::string StrProp(const Napi::Object& o, const char* k, const char* dflt) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(dflt);
}

double NumProp(const Napi::Object& o, const char* k, double dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

Napi::Value DistProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("mpi", ProbeTo(env, vp::dist::probe_mpi()));
  o.Set("nccl", ProbeTo(env, vp::dist::probe_nccl()));
  return o;
}

// distInit({ launcher, backend, rank, size, localRank, masterAddr, masterPort, timeout }) → info
Napi::Value DistInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "distInit: expected an options object");
  Napi::Object a = info[0].As<Napi::Object>();
  vp::dist::InitOptions o;
  o.launcher = StrProp(a, "launcher", "mpi");
  o.want = StrProp(a, "backend", "auto");
  o.rank = static_cast<int>(NumProp(a, "rank", 0));
  o.size = static_cast<int>(NumProp(a, "size", 1));
  o.local_rank = static_cast<int>(NumProp(a, "localRank", 0));
  o.master_addr = StrProp(a, "masterAddr", "");
  o.master_port = static_cast<int>(NumProp(a, "masterPort", 0));
  o.timeout_s = NumProp(a, "timeout", 600);
  vp::dist::Info out;
  ThrowIfError(env, vp::dist::init(o, &out));
  return InfoTo(env, out);
}

Napi::Value DistInfo(const Napi::CallbackInfo& info) { return InfoTo(info.Env(), vp::dist::info()); }

// distAllreduce(Float32Array | Float64Array | Int32Array) → Promise<void> (sum, in place)
Napi::Value DistAllreduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "distAllreduce: expected a Float32Array, Float64Array or Int32Array");
  Napi::TypedArray t = info[0].As<Napi::TypedArray>();
  vp::dist::Elem e;
  switch (t.TypedArrayType()) {
    case napi_float32_array: e = vp::dist::Elem::kFloat32; break;
    case napi_float64_array: e = vp::dist::Elem::kFloat64; break;
    case napi_int32_array: e = vp::dist::Elem::kInt32; break;
    default: throw Napi::TypeError::New(env, "distAllreduce: expected a Float32Array, Float64Array or Int32Array");
  }
  void* data = static_cast<char*>(t.ArrayBuffer().Data()) + t.ByteOffset();
  const int64_t n = static_cast<int64_t>(t.ElementLength());
  DistJob* j = new DistJob(env, info[0], [data, n, e]() { return vp::dist::allreduce_sum(data, n, e, false); });
  Napi::Promise p = j->Promise();
  j->Queue();
  return p;
}

// distBroadcast(typedArray, root) → Promise<void> (its bytes from `root`, in place)
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "distBroadcast: expected a typed array");
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "distBroadcast: root must be a number");
  Napi::TypedArray t = info[0].As<Napi::TypedArray>();
  void* data = static_cast<char*>(t.ArrayBuffer().Data()) + t.ByteOffset();
  const int64_t bytes = static_cast<int64_t>(t.ByteLength());
  const int root = info[1].As<Napi::Number>().Int32Value();
  DistJob* j = new DistJob(env, info[0], [data, bytes, root]() { return vp::dist::broadcast(data, bytes, root, false); });
  Napi::Promise p = j->Promise();
  j->Queue();
  return p;
}

Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  DistJob* j = new DistJob(info.Env(), info.Env().Undefined(), []() { return vp::dist::barrier(); });
  Napi::Promise p = j->Promise();
  j->Queue();
  return p;
}

// distAbort(code, message): ends every rank; does not return.
Napi::Value DistAbort(const Napi::CallbackInfo& info) {
  const int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  const std::string why = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "aborted";
  vp::dist::abort_all(code, why);
}

Napi::Value DistFinalize(const Napi::CallbackInfo& info) {
  ThrowIfError(info.Env(), vp::dist::finalize());
  return info.Env().Undefined();
}

Napi::Value DistSetTimeout(const Napi::CallbackInfo& info) {
  vp::dist::set_timeout(info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 600);
  return info.Env().Undefined();
}

}  // namespace

void InitDist(Napi::Env env, Napi::Object exports) {
  exports.Set("distProbe", Napi::Function::New(env, DistProbe));
  exports.Set("distInit", Napi::Function::New(env, DistInit));
  exports.Set("distInfo", Napi::Function::New(env, DistInfo));
  exports.Set("distAllreduce", Napi::Function::New(env, DistAllreduce));
  exports.Set("distBroadcast", Napi::Function::New(env, DistBroadcast));
  exports.Set("distBarrier", Napi::Function::New(env, DistBarrier));
  exports.Set("distAbort", Napi::Function::New(env, DistAbort));
  exports.Set("distFinalize", Napi::Function::New(env, DistFinalize));
  exports.Set("distSetTimeout", Napi::Function::New(env, DistSetTimeout));
}

}  // namespace vpaddon
