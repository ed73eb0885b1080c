// Shared helpers of the Node-API binding: turning JS values into TensorViews,
// and core Status values into JS exceptions.
//
// The TypeScript layer validates every argument before calling in (so users
// get precise TypeError/RangeError messages); the addon checks again what
// memory safety depends on (buffer sizes against shapes), because a wrong call
// must never read or write out of bounds, whoever makes it.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vpaddon {

// Throw the JS error that matches a failed Status (RangeError for out-of-range,
// TypeError for invalid arguments, Error otherwise). Returns normally when ok.
void ThrowIfError(Napi::Env env, const vp::Status& s);

// Shape from a JS array of non-negative integers.
std::vector<int64_t> ShapeArg(const Napi::Value& v, const char* name);

// A TensorView over a CPU typed array (Float32Array or Int32Array; 16-bit
// dtypes arrive as Uint16Array) with the given shape. Checks that the array
// holds exactly numel elements of the right type.
vp::TensorView CpuView(const Napi::Value& data, const std::vector<int64_t>& shape,
                       const char* name);

// A TensorView over a CUDA buffer handle (see device_buffer.cpp).
vp::TensorView CudaView(const Napi::Value& handle, const std::vector<int64_t>& shape,
                        vp::DType dtype, const char* name);

vp::DType DTypeArg(const Napi::Value& v, const char* name);

// The one argument of a binding whose values would be more than six positional
// arguments: an object of named fields (lib/addon-types.ts types each). Throws a
// TypeError naming `fn` when info[index] is not an object.
Napi::Object ArgsObject(const Napi::CallbackInfo& info, const char* fn, uint32_t index = 0);

// Each op family registers its functions here; module.cpp calls them all.
void InitBackend(Napi::Env env, Napi::Object exports);
void InitLimits(Napi::Env env, Napi::Object exports);
void InitDeviceBuffer(Napi::Env env, Napi::Object exports);
void InitMatmul(Napi::Env env, Napi::Object exports);
void InitMatmulF32Bf16(Napi::Env env, Napi::Object exports);
void InitAttention(Napi::Env env, Napi::Object exports);
void InitLayers(Napi::Env env, Napi::Object exports);
void InitNormAct(Napi::Env env, Napi::Object exports);
void InitPretrainedDevice(Napi::Env env, Napi::Object exports);
void InitVideoLM(Napi::Env env, Napi::Object exports);
void InitPack(Napi::Env env, Napi::Object exports);
void InitGrpo(Napi::Env env, Napi::Object exports);
void InitInfoNce(Napi::Env env, Napi::Object exports);
void InitDist(Napi::Env env, Napi::Object exports);
void InitHostMemory(Napi::Env env, Napi::Object exports);

}  // namespace vpaddon
