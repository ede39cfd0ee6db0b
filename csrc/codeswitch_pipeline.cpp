// The file pipeline of the codeswitching pass: a Megatron .bin rewritten in bounded blocks on
// several threads, blocks written in order, so that the output never depends on the thread
// count or the block size.
#include "codeswitch_engine.h"

namespace prealign {
namespace cs {
namespace {

// One unit of work of the pipeline: sequences [seq_begin, seq_end), read and written as a whole.
template <typename T>
struct Block {
    int64_t seq_begin = 0, seq_end = 0;
    bool ready = false;
    Buffer<T> out;
    MaskBuffer mask;
};

}  // namespace

template <typename T>
py::tuple CodeswitchEngine::run_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                      const CArray<int32_t>& lengths_a, const CArray<int64_t>& pointers_a, int64_t threads,
                      int64_t chunk_tokens, const py::object& progress) const {
    const int64_t n_seq = lengths_a.shape(0);
    if (pointers_a.shape(0) != n_seq) throw std::invalid_argument("lengths and pointers differ in size");
    if (threads < 1 || chunk_tokens < 1) throw std::invalid_argument("threads and chunk_tokens must be >= 1");
    const int32_t* lengths = lengths_a.data();
    const int64_t* pointers = pointers_a.data();

    // Block boundaries: consecutive sequences totalling >= chunk_tokens input tokens.
    std::vector<int64_t> bounds{0};
    for (int64_t s = 0, acc = 0; s < n_seq; ++s) {
        acc += lengths[s];
        if (acc >= chunk_tokens || s + 1 == n_seq) {
            bounds.push_back(s + 1);
            acc = 0;
        }
    }
    const int64_t n_blocks = static_cast<int64_t>(bounds.size()) - 1;
    const int64_t slots = 2 * threads;  // blocks in flight: bounds memory to ~2*threads blocks

    const int in_fd = ::open(in_bin.c_str(), O_RDONLY);
    if (in_fd < 0) throw std::runtime_error(in_bin + ": cannot open for reading");
    std::FILE* fo = std::fopen(out_bin.c_str(), "wb");
    std::FILE* fm = fo ? std::fopen(out_mask.c_str(), "wb") : nullptr;
    if (!fo || !fm) {
        ::close(in_fd);
        if (fo) std::fclose(fo);
        throw std::runtime_error("cannot open " + std::string(fo ? out_mask : out_bin) + " for writing");
    }

    py::array_t<int32_t> new_lengths_a(static_cast<py::ssize_t>(n_seq));
    int32_t* new_lengths = new_lengths_a.mutable_data();
    std::vector<Block<T>> ring(static_cast<size_t>(slots));
    std::vector<Counts> worker_counts(static_cast<size_t>(threads), Counts(n_languages_));
    std::mutex mu;
    std::condition_variable cv;
    int64_t next_block = 0, written = 0;
    bool abort = false;
    std::string error;
    std::exception_ptr py_error;

    auto fail = [&](const std::string& msg) {
        std::lock_guard<std::mutex> lock(mu);
        if (!abort) error = msg;
        abort = true;
        cv.notify_all();
    };

    auto work = [&](size_t w) {
        std::vector<char> in_buf;
        Scratch scratch;
        while (true) {
            int64_t b;
            {
                std::unique_lock<std::mutex> lock(mu);
                if (abort || next_block >= n_blocks) return;
                b = next_block++;
                cv.wait(lock, [&] { return abort || b < written + slots; });
                if (abort) return;
            }
            Block<T>& blk = ring[static_cast<size_t>(b % slots)];
            blk.seq_begin = bounds[b];
            blk.seq_end = bounds[b + 1];
            blk.out.clear();
            blk.mask.clear();
            const int64_t first = blk.seq_begin, last = blk.seq_end - 1;
            const int64_t span_begin = pointers[first];
            const int64_t span_end = pointers[last] + static_cast<int64_t>(lengths[last]) * sizeof(T);
            in_buf.resize(static_cast<size_t>(span_end - span_begin));
            for (int64_t done = 0; done < span_end - span_begin;) {
                const ssize_t r = ::pread(in_fd, in_buf.data() + done, static_cast<size_t>(span_end - span_begin - done),
                                          span_begin + done);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) return fail(in_bin + ": read failed at byte " + std::to_string(span_begin + done));
                done += r;
            }
            const char* const span = in_buf.data();
            int64_t total = 0;
            for (int64_t s = first; s <= last; ++s) total += lengths[s];
            blk.out.reserve(static_cast<size_t>(total + total / 8 + 16));
            blk.mask.reserve(static_cast<size_t>(total + total / 8 + 16));
            for (int64_t s = first; s <= last; ++s) {
                const T* tok = reinterpret_cast<const T*>(span + (pointers[s] - span_begin));
                const size_t before = blk.out.size();
                try {
                    process(tok, lengths[s], static_cast<uint64_t>(s), blk.out, blk.mask, worker_counts[w], scratch);
                } catch (const BadToken& bt) {
                    return fail(in_bin + ": sequence " + std::to_string(s) + ": token id " + std::to_string(bt.id) +
                                " at position " + std::to_string(bt.position) +
                                " is outside the vocabulary (size " + std::to_string(vocab_) + ")");
                } catch (const std::exception& e) {
                    return fail(in_bin + ": sequence " + std::to_string(s) + ": " + e.what());
                }
                const size_t grown = blk.out.size() - before;
                if (grown > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
                    return fail(in_bin + ": sequence " + std::to_string(s) + " exceeds 2^31 tokens after codeswitching");
                new_lengths[s] = static_cast<int32_t>(grown);
            }
            {
                std::lock_guard<std::mutex> lock(mu);
                blk.ready = true;
            }
            cv.notify_all();
        }
    };
    auto worker = [&](size_t w) {
        try {
            work(w);
        } catch (const std::exception& e) {  // e.g. std::bad_alloc: never let a thread terminate()
            fail(in_bin + ": " + e.what());
        }
    };

    {
        py::gil_scoped_release release;
        std::vector<std::thread> pool;
        for (int64_t w = 0; w < threads; ++w) pool.emplace_back(worker, static_cast<size_t>(w));
        int64_t done_tokens = 0;
        auto last_report = std::chrono::steady_clock::now();
        for (int64_t b = 0; b < n_blocks; ++b) {
            Block<T>* blk;
            {
                std::unique_lock<std::mutex> lock(mu);
                blk = &ring[static_cast<size_t>(b % slots)];
                cv.wait(lock, [&] { return abort || blk->ready; });
                if (abort) break;
            }
            const size_t n_out = blk->out.size();
            if ((n_out && std::fwrite(blk->out.data(), sizeof(T), n_out, fo) != n_out) ||
                (n_out && std::fwrite(blk->mask.data(), 1, n_out, fm) != n_out)) {
                fail("write failed (" + out_bin + "): disk full?");
                break;
            }
            for (int64_t s = blk->seq_begin; s < blk->seq_end; ++s) done_tokens += lengths[s];
            const int64_t done_seq = blk->seq_end;
            blk->out.clear();  // capacity kept: at most `slots` blocks of memory
            blk->mask.clear();
            {
                std::lock_guard<std::mutex> lock(mu);
                blk->ready = false;
                ++written;
            }
            cv.notify_all();
            const auto now = std::chrono::steady_clock::now();
            if (!progress.is_none() && now - last_report > std::chrono::milliseconds(500)) {
                last_report = now;
                py::gil_scoped_acquire acquire;
                try {
                    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                    progress(done_tokens, done_seq);
                } catch (...) {
                    py_error = std::current_exception();
                    fail("interrupted");
                    break;
                }
            }
        }
        for (auto& t : pool) t.join();
    }
    ::close(in_fd);
    const bool fo_ok = std::fclose(fo) == 0;
    const bool fm_ok = std::fclose(fm) == 0;
    const bool close_ok = fo_ok && fm_ok;
    if (py_error) std::rethrow_exception(py_error);
    if (abort) throw std::invalid_argument(error);
    if (!close_ok) throw std::runtime_error("write failed (" + out_bin + "): disk full?");

    Counts total(n_languages_);
    for (const auto& c : worker_counts) total.add(c);
    return py::make_tuple(new_lengths_a, total.as_array());
}

py::tuple CodeswitchEngine::process_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                          const py::array& lengths_a, const py::array& pointers_a, int64_t itemsize,
                          int64_t threads, int64_t chunk_tokens, const py::object& progress) const {
    if (itemsize != 2 && itemsize != 4) throw py::value_error("token itemsize must be 2 (uint16) or 4 (int32)");
    if (threads < 1 || threads > kMaxThreads)
        throw py::value_error("threads must lie in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(threads));
    if (chunk_tokens < 1) throw py::value_error("chunk_tokens must be >= 1");
    const auto lengths = int_array<int32_t>(lengths_a, "lengths");
    const auto pointers = int_array<int64_t>(pointers_a, "pointers");
    const int64_t n_seq = lengths.shape(0);
    if (pointers.shape(0) != n_seq) throw py::value_error("lengths and pointers differ in size");
    // Outputs may not be the input (or each other): opening them for writing truncates.
    struct stat st_in {};
    if (::stat(in_bin.c_str(), &st_in) != 0) throw py::value_error(in_bin + ": no such file");
    if (out_bin == out_mask) throw py::value_error("out_bin and out_mask are the same path: " + out_bin);
    for (const std::string* out : {&out_bin, &out_mask}) {
        struct stat st_out {};
        if (*out == in_bin || (::stat(out->c_str(), &st_out) == 0 && st_out.st_dev == st_in.st_dev &&
                               st_out.st_ino == st_in.st_ino))
            throw py::value_error("output " + *out + " is the input " + in_bin + " (it would be truncated)");
    }
    const int32_t* len = lengths.data();
    const int64_t* ptr = pointers.data();
    const int64_t file_size = static_cast<int64_t>(st_in.st_size);
    for (int64_t s = 0; s < n_seq; ++s) {
        if (len[s] < 0) throw py::value_error("lengths[" + std::to_string(s) + "] = " + std::to_string(len[s]) + " is negative");
        if (ptr[s] < 0 || ptr[s] > file_size)
            throw py::value_error("pointers[" + std::to_string(s) + "] = " + std::to_string(ptr[s]) + " is outside " + in_bin +
                                  " (" + std::to_string(file_size) + " bytes)");
        if (s > 0 && ptr[s] < ptr[s - 1] + static_cast<int64_t>(len[s - 1]) * itemsize)
            throw py::value_error("pointers[" + std::to_string(s) + "] overlaps the previous sequence (pointers must increase)");
        if (static_cast<int64_t>(len[s]) * itemsize > file_size - ptr[s])
            throw py::value_error("sequence " + std::to_string(s) + " ends past the end of " + in_bin + " (" +
                                  std::to_string(file_size) + " bytes)");
    }
    if (itemsize == 2) return run_dataset<uint16_t>(in_bin, out_bin, out_mask, lengths, pointers, threads, chunk_tokens, progress);
    if (itemsize == 4) return run_dataset<int32_t>(in_bin, out_bin, out_mask, lengths, pointers, threads, chunk_tokens, progress);
    throw std::invalid_argument("token itemsize must be 2 (uint16) or 4 (int32)");
}

}  // namespace cs
}  // namespace prealign
