// Tests of the data-parallel engines that run in one process (vp/dist.h): the
// run-time discovery of MPI and NCCL, argument checks, the NCCL-id rendezvous
// of a torchrun-style launch (ranks as threads on the loopback interface), and,
// where a GPU and libnccl.so.2 are present, a 1-rank NCCL all-reduce of a
// device buffer. Multi-rank MPI runs are tested under mpirun by the ava test
// test/distributed.test.ts. (ctest runs each test case in its own process, so
// each one sees a fresh, uninitialized engine.)
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "vp/cuda.h"
#include "vp/dist.h"

namespace {

// A TCP port that was free a moment ago (bind to port 0, read it back, close).
int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  close(s);
  return ntohs(a.sin_port);
}

struct EnvVar {
  std::string name;
  EnvVar(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~EnvVar() { unsetenv(name.c_str()); }
};

}  // namespace

TEST_CASE("dist: a library that is not there is reported with its name, not a crash") {
  {
    EnvVar e("VP_MPI_LIBRARY", "/nonexistent/libmpi.so.40");
    vp::dist::Probe p = vp::dist::probe_mpi();
    CHECK_FALSE(p.found);
    CHECK(p.library == "/nonexistent/libmpi.so.40");
    CHECK(p.reason.find("/nonexistent/libmpi.so.40") != std::string::npos);
  }
  {
    EnvVar e("VP_NCCL_LIBRARY", "/nonexistent/libnccl.so.2");
    vp::dist::Probe p = vp::dist::probe_nccl();
    CHECK_FALSE(p.found);
    CHECK(p.reason.find("/nonexistent/libnccl.so.2") != std::string::npos);
  }
  {
    // A library that loads but is not MPI (the C library has no MPI entry points).
    EnvVar e("VP_MPI_LIBRARY", "libc.so.6");
    vp::dist::Probe p = vp::dist::probe_mpi();
    CHECK_FALSE(p.found);
    CHECK(p.reason.find("not Open MPI") != std::string::npos);
  }
}

TEST_CASE("dist: Open MPI is found by its soname when installed") {
  vp::dist::Probe p = vp::dist::probe_mpi();
  CHECK(p.library == "libmpi.so.40");
  if (!p.found) {
    MESSAGE("libmpi.so.40 is not installed here: " << p.reason);
    CHECK(p.reason.find("libmpi.so.40") != std::string::npos);
    return;
  }
  CHECK(p.reason.empty());
  CHECK(p.version.rfind("Open MPI", 0) == 0);
}

TEST_CASE("dist: collectives refuse to run before init, and check their arguments") {
  float x[4] = {1, 2, 3, 4};
  CHECK(vp::dist::allreduce_sum(x, 4, vp::dist::Elem::kFloat32, false).code() == vp::StatusCode::kUnavailable);
  CHECK(vp::dist::broadcast(x, 16, 0, false).code() == vp::StatusCode::kUnavailable);
  CHECK(vp::dist::barrier().code() == vp::StatusCode::kUnavailable);
  CHECK(vp::dist::allreduce_sum(x, -1, vp::dist::Elem::kFloat32, false).code() == vp::StatusCode::kOutOfRange);
  CHECK(vp::dist::allreduce_sum(nullptr, 3, vp::dist::Elem::kFloat32, false).code() == vp::StatusCode::kInvalidArgument);
  CHECK(x[0] == 1.0f);
  CHECK_FALSE(vp::dist::info().initialized);
  CHECK(vp::dist::finalize().ok());  // nothing to shut down
}

TEST_CASE("dist: init rejects bad options before touching an engine") {
  vp::dist::InitOptions o;
  o.launcher = "srun";
  CHECK(vp::dist::init(o, nullptr).code() == vp::StatusCode::kInvalidArgument);
  // init runs once per process: the first result stands.
  vp::dist::InitOptions good;
  good.launcher = "env";
  good.size = 2;
  CHECK(vp::dist::init(good, nullptr).code() == vp::StatusCode::kInvalidArgument);
  CHECK_FALSE(vp::dist::info().initialized);
}

TEST_CASE("dist: init with a rank outside the world is refused") {
  vp::dist::InitOptions o;
  o.launcher = "env";
  o.rank = 2;
  o.size = 2;
  vp::Status s = vp::dist::init(o, nullptr);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("rank") != std::string::npos);
}

TEST_CASE("dist: the NCCL id reaches every rank of a torchrun-style rendezvous") {
  const int port = free_port();
  const int size = 4;
  std::vector<std::vector<unsigned char>> ids(size, std::vector<unsigned char>(129, 0));
  std::mt19937 rng(12345);
  for (auto& b : ids[0]) b = static_cast<unsigned char>(rng());
  std::vector<vp::Status> st(size);
  std::vector<std::thread> ranks;
  // Clients first: they must retry until rank 0 listens.
  for (int r = size - 1; r >= 0; --r) {
    ranks.emplace_back([&, r] { st[r] = vp::dist::exchange_id("127.0.0.1", port, r, size, 20.0, ids[r].data(), 129); });
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r << ": " << st[r].message());
    CHECK(st[r].ok());
    CHECK(ids[r] == ids[0]);
  }
}

TEST_CASE("dist: a stray connection does not receive the id or stall the rendezvous") {
  const int port = free_port();
  std::vector<unsigned char> id0(129), id1(129, 0);
  for (size_t i = 0; i < id0.size(); ++i) id0[i] = static_cast<unsigned char>(i * 7 + 1);
  vp::Status s0, s1;
  std::thread server([&] { s0 = vp::dist::exchange_id("127.0.0.1", port, 0, 2, 20.0, id0.data(), id0.size()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // A client speaking another protocol: 12 bytes that are not a hello.
  int c = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::vector<unsigned char> got;
  if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const char junk[12] = "GET / HTTP";
    send(c, junk, sizeof junk, MSG_NOSIGNAL);
    unsigned char buf[256];
    timeval tv{1, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const ssize_t k = recv(c, buf, sizeof buf, 0);
    if (k > 0) got.assign(buf, buf + k);
  }
  close(c);
  CHECK(got.empty());
  std::thread client([&] { s1 = vp::dist::exchange_id("localhost", port, 1, 2, 20.0, id1.data(), id1.size()); });
  server.join();
  client.join();
  CHECK(s0.ok());
  CHECK(s1.ok());
  CHECK(id1 == id0);
}

TEST_CASE("dist: a rank whose rank 0 never comes gives up in bounded time, naming the address") {
  const int port = free_port();
  unsigned char id[129] = {0};
  const auto t0 = std::chrono::steady_clock::now();
  vp::Status s = vp::dist::exchange_id("127.0.0.1", port, 1, 2, 0.5, id, sizeof id);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(s.code() == vp::StatusCode::kUnavailable);
  CHECK(s.message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(secs < 3.0);
  // And rank 0 waiting for a rank that never comes.
  vp::Status s0 = vp::dist::exchange_id("", free_port(), 0, 3, 0.5, id, sizeof id);
  CHECK(s0.code() == vp::StatusCode::kUnavailable);
  CHECK(s0.message().find("0 of 2") != std::string::npos);
  CHECK(vp::dist::exchange_id("127.0.0.1", 0, 1, 2, 1.0, id, sizeof id).code() == vp::StatusCode::kOutOfRange);
  CHECK(vp::dist::exchange_id("127.0.0.1", 80, 2, 2, 1.0, id, sizeof id).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("dist: 1-rank NCCL all-reduce and broadcast of a cuda device buffer (GPU + libnccl.so.2)") {
  if (vptest::skip_without_cuda()) return;
  vp::dist::Probe p = vp::dist::probe_nccl();
  if (!p.found) {
    MESSAGE("skipped: " << p.reason);
    return;
  }
  MESSAGE("using " << p.version << " from " << p.library);
  vp::dist::InitOptions o;
  o.launcher = "env";
  o.want = "nccl";
  o.master_addr = "127.0.0.1";
  o.master_port = free_port();
  vp::dist::Info info;
  vp::Status s = vp::dist::init(o, &info);
  INFO(s.message());
  REQUIRE(s.ok());
  CHECK(info.backend == vp::dist::Backend::kNccl);
  const size_t n = 100003;
  std::vector<float> host = vptest::random_floats(n, 7);
  void* dev = nullptr;
  REQUIRE(vp::cuda::malloc_device(&dev, n * sizeof(float)).ok());
  REQUIRE(vp::cuda::copy_to_device(dev, host.data(), n * sizeof(float)).ok());
  REQUIRE(vp::dist::allreduce_sum(dev, static_cast<int64_t>(n), vp::dist::Elem::kFloat32, true).ok());
  std::vector<float> out = vptest::poisoned(n);
  REQUIRE(vp::cuda::copy_to_host(out.data(), dev, n * sizeof(float)).ok());
  CHECK(vptest::rel_error(out, host) == 0.0);  // one rank: the sum is the buffer itself
  // A host buffer goes through device memory.
  std::vector<double> h64 = {1.5, -2.25, 3e10};
  REQUIRE(vp::dist::allreduce_sum(h64.data(), 3, vp::dist::Elem::kFloat64, false).ok());
  CHECK(h64[2] == 3e10);
  REQUIRE(vp::dist::broadcast(dev, static_cast<int64_t>(n * sizeof(float)), 0, true).ok());
  REQUIRE(vp::dist::barrier().ok());
  CHECK(vp::dist::finalize().ok());
  vp::cuda::free_device(dev);
}
