// The NCCL unique-id exchange of a torchrun-style launch (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) where no MPI is there to broadcast it.
//
// Protocol (TCP, one message each way): rank 0 listens on MASTER_PORT; every
// other rank connects to MASTER_ADDR:MASTER_PORT (retrying while rank 0 is not
// up yet) and sends a 12-byte hello {magic "VPID", rank, size}; rank 0 checks it
// and answers with the id bytes. A hello with a wrong magic or size is dropped
// (a stray connection cannot receive the id or make rank 0 give up). Cost:
// size−1 connections to rank 0, 12 + bytes bytes each; every wait is bounded
// by timeout_s.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vp/dist.h"

namespace vp::dist {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x44495056;  // "VPID" little-endian

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

double left_ms(Clock::time_point deadline) {
  return std::chrono::duration<double, std::milli>(deadline - Clock::now()).count();
}

// Reads or writes exactly n bytes before the deadline.
bool io_all(int fd, void* buf, size_t n, bool write, Clock::time_point deadline) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const double ms = left_ms(deadline);
    if (ms <= 0) return false;
    pollfd pf{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    const int r = poll(&pf, 1, static_cast<int>(ms) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t k = write ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::string fmt_seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

std::string where(const std::string& addr, int port) { return addr + ":" + std::to_string(port); }

Status serve(int port, int size, Clock::time_point deadline, double timeout_s, const void* id, size_t bytes) {
  Fd s(socket(AF_INET6, SOCK_STREAM, 0));
  bool v6 = s.fd >= 0;
  if (!v6) s.fd = socket(AF_INET, SOCK_STREAM, 0);
  if (s.fd < 0) return Status::Internal(std::string("rendezvous: socket: ") + std::strerror(errno));
  int one = 1, zero = 0;
  setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 clients too
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0)
    return Status::Unavailable("rendezvous: rank 0 cannot listen on port " + std::to_string(port) + ": " +
                               std::strerror(errno) + " (is MASTER_PORT taken by another program?)");
  if (listen(s.fd, size) != 0) return Status::Internal(std::string("rendezvous: listen: ") + std::strerror(errno));
  std::vector<bool> served(static_cast<size_t>(size), false);
  int done = 1;
  while (done < size) {
    const double ms = left_ms(deadline);
    pollfd pf{s.fd, POLLIN, 0};
    const int r = ms > 0 ? poll(&pf, 1, static_cast<int>(ms) + 1) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return Status::Unavailable("rendezvous: rank 0 heard from " + std::to_string(done - 1) + " of " +
                                 std::to_string(size - 1) + " ranks within " + fmt_seconds(timeout_s) +
                                 " s (are all WORLD_SIZE processes started, with the same MASTER_ADDR/MASTER_PORT?)");
    Fd c(accept(s.fd, nullptr, nullptr));
    if (c.fd < 0) continue;
    uint32_t hello[3];
    // A short per-connection limit: a silent stray connection cannot stall the others for long.
    const auto conn_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(5));
    if (!io_all(c.fd, hello, sizeof hello, false, conn_deadline)) continue;
    const int peer = static_cast<int>(hello[1]);
    if (hello[0] != kMagic || static_cast<int>(hello[2]) != size || peer <= 0 || peer >= size || served[peer]) continue;
    if (!io_all(c.fd, const_cast<void*>(id), bytes, true, conn_deadline)) continue;
    served[peer] = true;
    ++done;
  }
  return Status::Ok();
}

Status join(const std::string& addr, int port, int rank, int size, Clock::time_point deadline, double timeout_s,
            void* id, size_t bytes) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string last = "no attempt";
  while (left_ms(deadline) > 0) {
    addrinfo* res = nullptr;
    const int g = getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (g != 0) {
      last = std::string("cannot resolve MASTER_ADDR: ") + gai_strerror(g);
    } else {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        Fd c(socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol));
        if (c.fd < 0) continue;
        if (connect(c.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
          last = std::strerror(errno);
          continue;
        }
        const uint32_t hello[3] = {kMagic, static_cast<uint32_t>(rank), static_cast<uint32_t>(size)};
        if (io_all(c.fd, const_cast<uint32_t*>(hello), sizeof hello, true, deadline) &&
            io_all(c.fd, id, bytes, false, deadline)) {
          freeaddrinfo(res);
          return Status::Ok();
        }
        last = "connected, but no id came back";
      }
      freeaddrinfo(res);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::Unavailable("rendezvous: rank " + std::to_string(rank) + " could not get the NCCL id from rank 0 at " +
                             where(addr, port) + " within " + fmt_seconds(timeout_s) + " s (" + last + ")");
}

}  // namespace

Status exchange_id(const std::string& addr, int port, int rank, int size, double timeout_s, void* id, size_t bytes) {
  if (size < 1 || rank < 0 || rank >= size)
    return Status::OutOfRange("rendezvous: rank must be in [0, size), got rank " + std::to_string(rank) + " of " +
                              std::to_string(size));
  if (port <= 0 || port > 65535) return Status::OutOfRange("rendezvous: MASTER_PORT must be in [1, 65535], got " + std::to_string(port));
  if (rank > 0 && addr.empty()) return Status::Invalid("rendezvous: MASTER_ADDR is empty");
  if (!id || bytes == 0) return Status::Invalid("rendezvous: no id buffer");
  if (size == 1) return Status::Ok();
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  return rank == 0 ? serve(port, size, deadline, timeout_s, id, bytes)
                   : join(addr, port, rank, size, deadline, timeout_s, id, bytes);
}

}  // namespace vp::dist
