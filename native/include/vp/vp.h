// vp/vp.h — the whole public core API in one include: every header of
// native/include/vp/ (infrastructure, each op family, the model). A native
// test (native/tests/test_umbrella.cpp) checks that this list names every header.
#pragma once

#include "vp/attention.h"
#include "vp/cpu_features.h"
#include "vp/cuda.h"
#include "vp/dist.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/gemm_f32_bf16.h"
#include "vp/grpo.h"
#include "vp/infonce.h"
#include "vp/layers.h"
#include "vp/logprobs.h"
#include "vp/model_kernels.h"
#include "vp/norm_act.h"
#include "vp/optim.h"
#include "vp/pack.h"
#include "vp/pretrained_kernels.h"
#include "vp/rng.h"
#include "vp/sample.h"
#include "vp/status.h"
#include "vp/tensor.h"
#include "vp/thread_pool.h"
#include "vp/videolm.h"
