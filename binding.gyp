# Fallback build with node-gyp (npm run build:gyp): CPU backend only, the same
# sources as CMakeLists.txt (listed by scripts/gyp-sources.mjs, so the two
# builds never drift apart). The ISA-specific kernels select their instruction
# set with `#pragma GCC target`, so no per-file flags are needed here.
{
  "targets": [
    {
      "target_name": "videoperceiver",
      "sources": [
        "<!@(node scripts/gyp-sources.mjs)"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O3", "-fexceptions"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}
