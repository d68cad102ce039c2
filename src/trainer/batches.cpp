// Batches on their way to the model: the device, streams, staging, the pinned host allocator, and the
// CPU BLAS library's work buffers.
#include "trainer/batches.hpp"

#include <c10/core/StreamGuard.h>

#include <dlfcn.h>

#include <cstdlib>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "trainer/messages.hpp"

namespace sluice::train {

namespace detail {

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("--device " + name +
                  " was requested but no CUDA GPU is available (this libtorch has no CUDA support or no "
                  "GPU is visible); use --device cpu");
    if (name == "cuda") return torch::Device(torch::kCUDA, 0);
    int64_t index = -1;
    if (name.size() > 5 && name[4] == ':' && name.find_first_not_of("0123456789", 5) == std::string::npos)
      index = std::stoll(name.substr(5));
    if (index < 0) throw Error("bad device '" + name + "' (expected cpu, cuda or cuda:N)");
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (index >= count)
      throw Error("--device " + name + ": only " + std::to_string(count) + " CUDA device(s) are visible");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error("unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
}

void apply_precision(Precision p) {
  at::globalContext().setAllowTF32CuBLAS(p == Precision::kTf32);
  at::globalContext().setAllowTF32CuDNN(p == Precision::kTf32);
}

void sync_device(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

void check_batch_ids(const BatchView& v, const std::vector<int64_t>& sizes, uint64_t id_modulo) {
  // A branch-free pass (comparisons OR-ed together, vectorised by the compiler) over the B*26 ids; only a
  // batch holding a bad id is searched again for the first one, to name it.
  uint32_t limit[kNumSparse];
  for (int t = 0; t < kNumSparse; ++t)
    limit[t] = id_modulo > 0 ? uint32_t(INT32_MAX) + 1u : uint32_t(std::min<int64_t>(sizes[t], int64_t(INT32_MAX) + 1));
  const uint32_t* s = reinterpret_cast<const uint32_t*>(v.sparse);  // a negative id is >= 2^31 here
  uint32_t bad = 0;
  for (int64_t r = 0; r < v.rows; ++r, s += kNumSparse) {
    for (int t = 0; t < kNumSparse; ++t) bad |= s[t] >= limit[t] ? 1u : 0u;
  }
  if (bad == 0) return;
  const int32_t* p = v.sparse;
  for (int64_t r = 0; r < v.rows; ++r, p += kNumSparse) {
    for (int t = 0; t < kNumSparse; ++t) {
      const int64_t id = p[t];
      const int64_t max = id_modulo > 0 ? std::numeric_limits<int64_t>::max() : sizes[t];
      if (id < 0 || id >= max)
        throw Error("row " + std::to_string(v.first_row + static_cast<uint64_t>(r)) + ": C" +
                    std::to_string(t + 1) + " id " + std::to_string(id) + " is outside its embedding table of " +
                    std::to_string(sizes[t]) + " rows (do the table sizes match the data?)");
    }
  }
}

namespace {
// One stream per GPU for the host-to-device copies of batches.
c10::Stream copy_stream(const torch::Device& device) {
  static std::mutex mu;
  static std::unordered_map<int, c10::Stream> streams;
  const std::lock_guard<std::mutex> lock(mu);
  const int index = device.index() < 0 ? 0 : device.index();
  auto it = streams.find(index);
  if (it == streams.end()) {
    c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
    it = streams.emplace(index, impl.getStreamFromGlobalPool(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index)))).first;
  }
  return it->second;
}
}  // namespace

// Wraps a batch's memory as tensors (no copy); host batches are copied to a GPU model's device
// (asynchronously when the memory is pinned). The lease must outlive the work that reads them.
Staged empty_staged(const Dlrm& model) {
  Staged b;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(model.device());
  b.dense = torch::empty({0, kNumDense}, f32);
  b.labels = torch::empty({0}, f32);
  b.flat_ids = torch::empty({0}, f32.dtype(model.id_type()));
  return b;
}

torch::Tensor batch_labels(const BatchView& v, const Dlrm& model) {
  const torch::Device src = v.memory == MemoryKind::kDevice
                                ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(v.device))
                                : torch::Device(torch::kCPU);
  const torch::Tensor l = torch::from_blob(const_cast<float*>(v.labels), {v.rows},
                                           torch::TensorOptions().dtype(torch::kFloat32).device(src));
  return l.to(model.device(), /*non_blocking=*/false, /*copy=*/true);
}

Staged stage(const BatchView& v, const Dlrm& model, const TrainOptions& o) {
  if (v.rows <= 0 || !v.dense || !v.sparse || !v.labels) throw Error("internal: empty batch view");
  const bool on_host = v.memory != MemoryKind::kDevice;
  if (on_host && o.check_ids) check_batch_ids(v, model.arch().table_sizes, o.id_modulo);
  const torch::Device src = on_host ? torch::Device(torch::kCPU)
                                    : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(v.device));
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(src);
  const auto i32 = torch::TensorOptions().dtype(torch::kInt32).device(src);
  Staged b;
  b.rows = v.rows;
  b.dense = torch::from_blob(const_cast<float*>(v.dense), {v.rows, kNumDense}, f32);
  torch::Tensor sparse = torch::from_blob(const_cast<int32_t*>(v.sparse), {v.rows, kNumSparse}, i32);
  b.labels = torch::from_blob(const_cast<float*>(v.labels), {v.rows}, f32);
  if (src != model.device()) {
    const bool non_blocking = v.memory == MemoryKind::kPinnedHost;
    if (non_blocking && model.device().is_cuda()) {
      // Page-locked batches are copied on a stream of their own: the copy of the next batch runs while
      // the current step computes (on the caller's stream it would wait for that step to finish). The
      // caller's stream waits for the copy; the copies' memory is marked as used there, so the caching
      // allocator does not hand it out again before the step that reads it has run.
      c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
      const c10::Stream compute = impl.getStream(model.device());
      const c10::Stream copy = copy_stream(model.device());
      {
        const c10::StreamGuard on_copy(copy);
        b.dense = b.dense.to(model.device(), true);
        sparse = sparse.to(model.device(), true);
        b.labels = b.labels.to(model.device(), true);
      }
      c10::Event copied(c10::DeviceType::CUDA);
      copied.record(copy);
      copied.block(compute);
      for (const torch::Tensor* t : {&b.dense, &sparse, &b.labels})
        impl.recordDataPtrOnStream(t->storage().data_ptr(), compute);
    } else {
      b.dense = b.dense.to(model.device(), non_blocking);
      sparse = sparse.to(model.device(), non_blocking);
      b.labels = b.labels.to(model.device(), non_blocking);
    }
  }
  b.flat_ids = model.flat_ids(sparse, o.id_modulo);
  return b;
}

// Opens a stream; running out of memory for its ring of batches is reported as such.
std::unique_ptr<BatchStream> open_stream(const StreamFactory& streams, Split split, uint64_t start_row,
                                         int64_t batch_size, const TrainOptions& o) {
  std::unique_ptr<BatchStream> s = oom_guard(
      [&] {
        return std::string("allocating the ") + (split == Split::kTrain ? "training" : "test") + " batch ring (" +
               std::to_string(o.ring_depth) + " batches of " + std::to_string(batch_size) + " rows = " +
               bytes_text(kRowBytes * static_cast<double>(o.ring_depth) * static_cast<double>(batch_size)) +
               " of host memory)";
      },
      [&] { return pipeline_guard([&] { return streams(split, start_row, batch_size); }); });
  if (!s) throw Error(split == Split::kTrain ? "no training stream" : "no test stream");
  return s;
}

// The next batch of a stream; a producer that ran out of memory is reported as such.
Lease next_batch(BatchStream& stream, int64_t batch_size) {
  return oom_guard(
      [&] {
        return "in the data pipeline preparing batches of " + std::to_string(batch_size) +
               " rows (fewer --data-threads or a smaller --ring-depth need less)";
      },
      [&] { return pipeline_guard([&] { return stream.next(); }); });
}

// OpenBLAS (libtorch's matrix products on the CPU) allocates a work buffer for each of its threads on
// the first product and, when that allocation fails, retries forever: under an address-space limit
// (ulimit -v) or strict overcommit, running out of memory would be a hang. So the buffers are taken up
// front, once, after checking that the memory is there; OpenBLAS keeps them for the process's life.
void reserve_blas_buffers() {
  static std::mutex mu;
  static bool done = false;
  std::lock_guard<std::mutex> lock(mu);
  if (done) return;
  using ThreadsFn = int (*)();
  const auto threads_fn = reinterpret_cast<ThreadsFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (threads_fn == nullptr) {  // another BLAS
    done = true;
    return;
  }
  const int threads = std::max(1, threads_fn());
  constexpr size_t kBuffer = size_t{130} << 20;  // OpenBLAS's BUFFER_SIZE on x86-64 (128 MiB) and some
  const size_t need = static_cast<size_t>(threads) * kBuffer;
  void* probe = std::malloc(need);
  if (probe == nullptr)
    throw Error("out of memory reserving the BLAS library's work buffers (" + std::to_string(threads) +
                " thread(s) x 128 MiB = " + bytes_text(static_cast<double>(need)) +
                "; OPENBLAS_NUM_THREADS=1 needs less)");
  std::free(probe);
  // One product large enough to be split over every BLAS thread: each takes its buffer now.
  oom_guard([] { return std::string("reserving the BLAS library's work buffers"); }, [] {
    torch::NoGradGuard no_grad;
    const torch::Tensor a = torch::ones({512, 512}, torch::kFloat32);
    (void)torch::mm(a, a);
  });
  done = true;
}

}  // namespace detail

HostAllocator pinned_host_allocator(const std::string& device) {
  if (device.rfind("cuda", 0) != 0) return {};
  struct Pool {
    std::mutex mu;
    std::unordered_map<void*, torch::Tensor> live;  // keeps each pinned block alive until freed
  };
  auto pool = std::make_shared<Pool>();
  HostAllocator a;
  a.alloc = [pool](size_t n) -> void* {
    torch::Tensor t = torch::empty({static_cast<int64_t>(n)}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
    void* p = t.data_ptr();
    std::lock_guard<std::mutex> g(pool->mu);
    pool->live.emplace(p, std::move(t));
    return p;
  };
  a.free = [pool](void* p) {
    std::lock_guard<std::mutex> g(pool->mu);
    pool->live.erase(p);
  };
  return a;
}

}  // namespace sluice::train
