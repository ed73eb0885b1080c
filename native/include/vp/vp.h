// vp/vp.h — the whole public core API in one include.
#pragma once

#include "vp/cpu_features.h"
#include "vp/cuda.h"
#include "vp/gemm.h"
#include "vp/infonce.h"
#include "vp/layers.h"
#include "vp/optim.h"
#include "vp/pack.h"
#include "vp/rng.h"
#include "vp/sample.h"
#include "vp/status.h"
#include "vp/tensor.h"
#include "vp/thread_pool.h"
#include "vp/videolm.h"
