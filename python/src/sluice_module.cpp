// The Python extension (sluice._sluice): batch streams whose buffers Python arrays view through
// DLPack, and the prep and gen drivers. No libtorch: DLPack is a plain C ABI (nanobind's ndarray).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "sluice/batch.hpp"
#include "sluice/dataset.hpp"
#include "sluice/engine.hpp"
#include "sluice/gen.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/prep.hpp"
#include "sluice/schema.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// One batch handed to Python: the lease on its ring slot and the stream the slot belongs to. The three
// arrays of the batch share it (one Python capsule as their owner); the last one freed releases the
// lease, which gives the slot back to the ring.
struct HeldBatch {
  std::shared_ptr<sluice::BatchStream> stream;  // destroyed after the lease (declared first)
  sluice::Lease lease;
};

sluice::Split parse_split(const std::string& s) {
  if (s == "all") return sluice::Split::kAll;
  if (s == "train") return sluice::Split::kTrain;
  if (s == "test") return sluice::Split::kTest;
  if (s == "val") return sluice::Split::kVal;
  throw nb::value_error(("split must be 'all', 'train', 'val' or 'test', not '" + s + "'").c_str());
}

// Runs a long C++ call without the GIL, with SIGINT and SIGTERM recorded instead of ending the
// process (the call stops at its next check and throws Interrupted: KeyboardInterrupt in Python).
// (The module's exception translator turns Interrupted into KeyboardInterrupt.)
template <typename F>
auto interruptible(F&& f) {
  nb::gil_scoped_release nogil;
  sluice::InterruptGuard guard;
  return f();
}

// One dataset with its options (inspected once: rows, table sizes) and one pass over it: the
// producer starts at the first next() or drain(); fresh() gives a new, unstarted pass.
class Stream {
 public:
  Stream(const std::vector<std::string>& files, const std::string& dir, int64_t batch_size, const std::string& split,
         const std::string& engine, int device, uint64_t start_row, int ring_depth, int threads,
         const std::string& online_ids, uint64_t max_ind_range, const std::string& vocab_dir)
      : split_(parse_split(split)) {
    if (batch_size <= 0) throw nb::value_error("batch_size must be positive");
    if (ring_depth < 2) throw nb::value_error("ring_depth must be at least 2");
    nb::gil_scoped_release nogil;
    info_ = files.empty() ? sluice::inspect_dataset(dir) : sluice::inspect_files(files);
    so_.split = split_;
    so_.batch_size = batch_size;
    so_.ring_depth = ring_depth;
    so_.threads = threads;
    so_.engine = engine;
    so_.device = device;
    so_.start_row = start_row;
    so_.max_ind_range = max_ind_range;
    so_.vocab_dir = vocab_dir;
    so_.grow = true;  // Python may hold any number of batches
    const bool raw = info_.kind == sluice::DatasetKind::kRawDays;
    if (raw) {
      if (online_ids == "first-seen") {
        so_.ids = sluice::OnlineIds::kFirstSeen;
        so_.ids_from_start = true;
        if (max_ind_range > 0) so_.first_seen_capacity = int64_t(max_ind_range);
      } else if (online_ids == "modulo") {
        so_.ids = sluice::OnlineIds::kModulo;
        if (max_ind_range == 0) throw sluice::Error("online_ids='modulo' needs max_ind_range=N");
      } else if (online_ids == "vocab") {
        so_.ids = sluice::OnlineIds::kVocabFromPrep;
        if (vocab_dir.empty()) throw sluice::Error("online_ids='vocab' needs vocab_dir (a sluice prep output)");
      } else {
        throw sluice::Error("unknown online_ids '" + online_ids + "' (expected first-seen, modulo or vocab)");
      }
    } else if (engine != "auto" && !engine.empty()) {
      throw sluice::Error(info_.dir + " is a prepared dataset: engine applies to raw day files (sluice prep has its own)");
    }
    table_sizes_ = sluice::table_sizes_for(info_, so_);
    const int64_t n = sluice::split_rows(info_, split_);
    rows_ = std::max<int64_t>(0, n - int64_t(std::min<uint64_t>(start_row, uint64_t(n))));
  }
  Stream fresh() const {
    Stream s(*this);
    s.stream_.reset();
    s.started_ = false;
    return s;
  }

  // The next batch as (dense, sparse, labels, first_row, pointers), or None at the end. Waits without
  // the GIL, in slices, checking for signals between them (Ctrl-C raises KeyboardInterrupt).
  nb::object next() {
    start();
    if (!stream_) return nb::none();
    auto held = std::make_unique<HeldBatch>();
    held->stream = stream_;
    for (;;) {
      bool got;
      {
        nb::gil_scoped_release nogil;
        got = stream_->next_for(0.1, &held->lease);
      }
      if (got) break;
      if (PyErr_CheckSignals() != 0) throw nb::python_error();
    }
    if (!held->lease) {
      stream_.reset();  // the end: the stream goes once no batch views it
      return nb::none();
    }
    const sluice::BatchView v = held->lease.view();
    const bool dev = v.memory == sluice::MemoryKind::kDevice;
    const int dev_type = dev ? nb::device::cuda::value : nb::device::cpu::value;
    const int dev_id = dev ? v.device : 0;
    nb::capsule owner(held.release(), [](void* p) noexcept {
      // The batch's last array is gone: return the slot (and maybe end the stream) without the GIL.
      auto* h = static_cast<HeldBatch*>(p);
      if (PyGILState_Check()) {
        nb::gil_scoped_release nogil;
        delete h;
      } else {
        delete h;
      }
    });
    const size_t rows = size_t(v.rows);
    const size_t dense_shape[2] = {rows, size_t(sluice::kNumDense)};
    const size_t sparse_shape[2] = {rows, size_t(sluice::kNumSparse)};
    const size_t label_shape[1] = {rows};
    nb::ndarray<nb::array_api, float> dense(const_cast<float*>(v.dense), 2, dense_shape, owner, nullptr, nb::dtype<float>(), dev_type, dev_id);
    nb::ndarray<nb::array_api, int32_t> sparse(const_cast<int32_t*>(v.sparse), 2, sparse_shape, owner, nullptr, nb::dtype<int32_t>(),
                                dev_type, dev_id);
    nb::ndarray<nb::array_api, float> labels(const_cast<float*>(v.labels), 1, label_shape, owner, nullptr, nb::dtype<float>(), dev_type, dev_id);
    nb::tuple ptrs = nb::make_tuple(uintptr_t(v.dense), uintptr_t(v.sparse), uintptr_t(v.labels));
    return nb::make_tuple(nb::cast(dense), nb::cast(sparse), nb::cast(labels), v.first_row, ptrs);
  }

  // Drives the stream to its end from C++ (each batch released at once, no Python object per batch):
  // the rate the same engine gives without Python, for comparison. Returns (rows, batches).
  nb::tuple drain() {
    start();
    int64_t rows = 0, batches = 0;
    bool end = !stream_;
    while (!end) {
      {
        nb::gil_scoped_release nogil;
        const auto t0 = std::chrono::steady_clock::now();
        // Batches for up to 0.1 s, then a check for signals.
        while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(100)) {
          sluice::Lease lease;
          if (!stream_->next_for(0.1, &lease)) break;
          if (!lease) {
            end = true;
            break;
          }
          rows += lease.view().rows;
          ++batches;
        }  // each lease goes back to the ring here
      }
      if (!end && PyErr_CheckSignals() != 0) throw nb::python_error();
    }
    close();
    return nb::make_tuple(rows, batches);
  }

  int64_t rows() const { return rows_; }
  const std::vector<int64_t>& table_sizes() const { return table_sizes_; }
  std::string kind() const {
    switch (info_.kind) {
      case sluice::DatasetKind::kPreparedNpy: return "npy";
      case sluice::DatasetKind::kPreparedBin: return "dlrm-bin";
      case sluice::DatasetKind::kRawDays: return "raw";
    }
    return "?";
  }
  std::vector<std::string> parts() const { return info_.parts; }
  double wait_seconds() const { return stream_ ? stream_->wait_seconds() : 0.0; }
  // Stops the producer once no batch views the ring any more (the batches handed out stay valid).
  void close() {
    started_ = true;
    nb::gil_scoped_release nogil;
    stream_.reset();
  }

 private:
  void start() {
    if (started_) return;
    started_ = true;
    nb::gil_scoped_release nogil;
    stream_ = sluice::open_batch_stream(info_, so_);
  }

  sluice::Split split_;
  sluice::DatasetInfo info_;
  sluice::StreamOptions so_;
  std::vector<int64_t> table_sizes_;
  int64_t rows_ = 0;
  std::shared_ptr<sluice::BatchStream> stream_;
  bool started_ = false;
};

nb::dict prep_result(const sluice::PrepResult& r) {
  nb::dict d;
  d["rows"] = r.rows;
  d["rows_skipped"] = r.rows_skipped;
  d["bytes"] = r.bytes;
  d["seconds"] = r.seconds;
  d["engine"] = r.engine;
  return d;
}

}  // namespace

NB_MODULE(_sluice, m) {
  m.doc() = "sluice's C++ core: batch streams viewed through DLPack, prep and gen";
  static nb::exception<sluice::Error> error(m, "Error", PyExc_RuntimeError);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const sluice::Interrupted&) {
      ::alarm(0);  // the InterruptGuard's grace timer: the process goes on
      sluice::clear_interrupt();
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });

  nb::class_<Stream>(m, "Stream")
      .def(nb::init<const std::vector<std::string>&, const std::string&, int64_t, const std::string&, const std::string&, int,
                    uint64_t, int, int, const std::string&, uint64_t, const std::string&>(),
           "files"_a, "dir"_a, "batch_size"_a, "split"_a, "engine"_a, "device"_a, "start_row"_a, "ring_depth"_a,
           "threads"_a, "online_ids"_a, "max_ind_range"_a, "vocab_dir"_a)
      .def("next", &Stream::next)
      .def("close", &Stream::close)
      .def("fresh", &Stream::fresh)
      .def("drain", &Stream::drain)
      .def_prop_ro("rows", &Stream::rows)
      .def_prop_ro("table_sizes", &Stream::table_sizes)
      .def_prop_ro("kind", &Stream::kind)
      .def_prop_ro("parts", &Stream::parts)
      .def_prop_ro("wait_seconds", &Stream::wait_seconds);

  m.def(
      "prep",
      [](const std::vector<std::string>& inputs, const std::string& out, uint64_t max_ind_range, const std::string& vocab,
         uint32_t min_freq, int threads, const std::string& on_error, const std::string& format, const std::string& layout,
         const std::string& name, int days, const std::string& engine, double chunk_mb, bool overwrite) {
        sluice::PrepOptions o;
        o.inputs = inputs;
        o.out = out;
        o.max_ind_range = max_ind_range;
        if (vocab != "first-seen" && vocab != "none") throw nb::value_error("vocab must be 'first-seen' or 'none'");
        o.vocab = vocab == "none" ? sluice::VocabMode::kNone : sluice::VocabMode::kFirstSeen;
        if (min_freq < 1) throw nb::value_error("min_freq must be at least 1");
        o.min_freq = min_freq;
        o.threads = threads;
        if (on_error != "fail" && on_error != "skip") throw nb::value_error("on_error must be 'fail' or 'skip'");
        o.on_error = on_error == "skip" ? sluice::OnError::kSkip : sluice::OnError::kFail;
        if (format != "npy" && format != "dlrm-bin") throw nb::value_error("format must be 'npy' or 'dlrm-bin'");
        o.format = format == "dlrm-bin" ? sluice::OutputFormat::kDlrmBin : sluice::OutputFormat::kNpy;
        if (layout != "parts" && layout != "meta") throw nb::value_error("layout must be 'parts' or 'meta'");
        if (layout == "meta") {
          o.layout = sluice::OutputLayout::kMeta;
          o.format = sluice::OutputFormat::kDlrmBin;
        }
        o.meta_name = name;
        if (days < 0) throw nb::value_error("days must not be negative");
        o.days = days;
        o.engine = engine;
        if (chunk_mb < 0 || chunk_mb > 65536) throw nb::value_error("chunk_mb must be in (0, 65536] (0: the engine's default)");
        o.chunk_bytes = chunk_mb > 0 ? std::max<size_t>(1, size_t(chunk_mb * 1048576.0)) : 0;
        o.overwrite = overwrite;
        const sluice::PrepResult r = interruptible([&] { return sluice::prep(o); });
        return prep_result(r);
      },
      "inputs"_a, "out"_a, "max_ind_range"_a, "vocab"_a, "min_freq"_a, "threads"_a, "on_error"_a, "format"_a, "layout"_a,
      "name"_a, "days"_a, "engine"_a, "chunk_mb"_a, "overwrite"_a);

  m.def(
      "gen",
      [](const std::string& out, uint64_t rows, int days, uint64_t seed, double cardinality_scale, int threads,
         bool overwrite, bool sync) {
        sluice::GenOptions o;
        o.out = out;
        o.rows = rows;
        if (days < 1) throw nb::value_error("days must be at least 1");
        o.days = days;
        o.seed = seed;
        if (!(cardinality_scale > 0)) throw nb::value_error("cardinality_scale must be positive");
        o.cardinality_scale = cardinality_scale;
        if (threads < 0) throw nb::value_error("threads must not be negative");
        o.threads = threads;
        o.overwrite = overwrite;
        o.sync = sync;
        const sluice::GenResult r = interruptible([&] { return sluice::generate(o); });
        nb::dict d;
        d["rows"] = r.rows;
        d["bytes"] = r.bytes;
        d["ctr"] = r.ctr;
        d["oracle_test_auc"] = r.oracle_test_auc;
        d["seconds"] = r.seconds;
        return d;
      },
      "out"_a, "rows"_a, "days"_a, "seed"_a, "cardinality_scale"_a, "threads"_a, "overwrite"_a, "sync"_a);

  m.def("available_engines", &sluice::available_engines);
  m.def("cuda_available", [] { return sluice::cuda_device_available(); });
}
