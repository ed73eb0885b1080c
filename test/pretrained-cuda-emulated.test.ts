// The model-level CUDA cases of test/pretrained-cuda.test.ts on any machine: the
// addon's CUDA entry points are emulated on the host (test/cuda-emulation.ts), so
// every CUDA branch of the pretrained models' TypeScript (lib/pretrained/device.ts
// and its callers: buffer sizes, shapes, views, gathers and scatters, the device
// AdamW step, generation's device cache) runs and must reproduce the CPU model.
// The CUDA kernels themselves are tested on a GPU (native/tests/test_pretrained_cuda.cpp).
import { emulateCuda } from './cuda-emulation.js';
import { registerCudaCases } from './pretrained-cuda-cases.js';

emulateCuda();
registerCudaCases('emulated CUDA: ', () => false);
