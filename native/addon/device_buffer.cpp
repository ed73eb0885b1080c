// CUDA device buffers as JS objects. A buffer is a JS External that owns a
// cudaMalloc allocation; it is freed by dispose() (explicit, what users should
// call) or by the garbage collector's finalizer, whichever comes first.
#include "addon.h"
#include "vp/cuda.h"

namespace vpaddon {
namespace {

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  void release() {
    if (ptr) vp::cuda::free_device(ptr);
    ptr = nullptr;
  }
  ~DeviceBuffer() { release(); }
};

// The device bytes a live buffer holds are reported to V8 as external memory, so
// that the garbage collector runs sooner when JavaScript holds much device memory
// through handles it no longer uses (a handle object itself is a few bytes).
Napi::Value Wrap(Napi::Env env, DeviceBuffer* buf) {
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(buf->bytes));
  return Napi::External<DeviceBuffer>::New(env, buf, [](Napi::Env e, DeviceBuffer* b) {
    if (b->ptr) Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes));
    delete b;
  });
}

DeviceBuffer* Unwrap(const Napi::Value& v, const char* name) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": not a CUDA buffer");
  DeviceBuffer* b = v.As<Napi::External<DeviceBuffer>>().Data();
  if (!b->ptr && b->bytes)
    throw Napi::Error::New(v.Env(), std::string(name) + ": the CUDA tensor was disposed");
  return b;
}

// cudaAlloc(bytes) -> handle
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double bytes = info[0].As<Napi::Number>().DoubleValue();
  auto* b = new DeviceBuffer();
  b->bytes = static_cast<size_t>(bytes);
  vp::Status s = vp::cuda::malloc_device(&b->ptr, b->bytes);
  if (!s.ok()) {
    delete b;
    ThrowIfError(env, s);
  }
  return Wrap(env, b);
}

// cudaUpload(typedArray) -> handle
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  auto* b = new DeviceBuffer();
  b->bytes = ta.ByteLength();
  vp::Status s = vp::cuda::malloc_device(&b->ptr, b->bytes);
  if (s.ok()) s = vp::cuda::copy_to_device(b->ptr, static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), b->bytes);
  if (!s.ok()) {
    delete b;
    ThrowIfError(env, s);
  }
  return Wrap(env, b);
}

// cudaDownload(handle, typedArray): copies the whole buffer into the array.
Napi::Value Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* b = Unwrap(info[0], "tensor");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (ta.ByteLength() != b->bytes) throw Napi::RangeError::New(env, "download: size mismatch");
  ThrowIfError(env, vp::cuda::copy_to_host(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), b->ptr, b->bytes));
  return env.Undefined();
}

// cudaClone(handle) -> handle: a copy on the device (no round trip through the host).
Napi::Value Clone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBuffer* src = Unwrap(info[0], "tensor");
  auto* b = new DeviceBuffer();
  b->bytes = src->bytes;
  vp::Status s = vp::cuda::malloc_device(&b->ptr, b->bytes);
  if (s.ok()) s = vp::cuda::copy_device_to_device(b->ptr, src->ptr, b->bytes);
  if (!s.ok()) {
    delete b;
    ThrowIfError(env, s);
  }
  return Wrap(env, b);
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  if (info[0].IsExternal()) {
    DeviceBuffer* b = info[0].As<Napi::External<DeviceBuffer>>().Data();
    if (b->ptr) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(b->bytes));
    b->release();
  }
  return info.Env().Undefined();
}

// cudaConvert(src, srcShape, srcDtype, dst, dstDtype): dtype conversion on the device.
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto shape = ShapeArg(info[1], "shape");
  vp::TensorView src = CudaView(info[0], shape, DTypeArg(info[2], "dtype"), "src");
  vp::TensorView dst = CudaView(info[3], shape, DTypeArg(info[4], "dtype"), "dst");
  ThrowIfError(env, vp::cuda::convert(src, dst));
  return env.Undefined();
}

}  // namespace

vp::TensorView CudaView(const Napi::Value& handle, const std::vector<int64_t>& shape,
                        vp::DType dtype, const char* name) {
  DeviceBuffer* b = Unwrap(handle, name);
  vp::TensorView t;
  t.data = b->ptr;
  t.dtype = dtype;
  t.device = vp::Device::kCUDA;
  t.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
  if (t.nbytes() != b->bytes)
    throw Napi::RangeError::New(handle.Env(), std::string(name) + ": CUDA buffer holds " +
                                                  std::to_string(b->bytes) + " bytes, shape needs " +
                                                  std::to_string(t.nbytes()));
  return t;
}

void InitDeviceBuffer(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaAlloc", Napi::Function::New(env, Alloc));
  exports.Set("cudaUpload", Napi::Function::New(env, Upload));
  exports.Set("cudaDownload", Napi::Function::New(env, Download));
  exports.Set("cudaFree", Napi::Function::New(env, Free));
  exports.Set("cudaClone", Napi::Function::New(env, Clone));
  exports.Set("cudaConvert", Napi::Function::New(env, Convert));
}

}  // namespace vpaddon
