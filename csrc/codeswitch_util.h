// Shared pieces of the codeswitching pass (csrc/codeswitch_*.h, codeswitch_pipeline.cpp):
// flag bits, the counter-based draw, numpy argument checks, output buffers and counts.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>

namespace py = pybind11;

namespace prealign {
namespace cs {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint8_t kWordStart = 1;
constexpr uint8_t kSpecial = 2;
constexpr uint8_t kCanStart = 4;  // first token of some candidate source sequence
constexpr uint8_t kEligible = 8;  // kCanStart and not kSpecial (set once the table is built)
constexpr uint8_t kOpener = 16;   // a bare word may open right after this token (newline, quote, bracket)
constexpr uint8_t kAfterOpen = kSpecial | kOpener;  // the position after such a token opens a word
// Follow classes of the token right after a matched word, and leading classes of the token after
// that (megatron_prealign/alignment/boundaries.py).
constexpr uint8_t kFollowNo = 0, kFollowYes = 1, kFollowIfSpace = 2, kFollowIfNotDigit = 3;
constexpr uint8_t kLeadSpace = 0, kLeadSplit = 1, kLeadDigit = 2;
constexpr int64_t kMaxThreads = 4096;
constexpr int64_t kMaxLanguages = 1 << 20;
constexpr size_t kFlagsPad = 64;  // zero bytes after the flags (4-byte gathers read 3 past an id)

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// floor(r * n / 2**64): an index in [0, n) from a uniform 64-bit draw (Lemire's reduction).
inline uint64_t mul_hi(uint64_t r, uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// A 1-D integer (or bool) array from Python as CArray<T>: ValueError for another dimension, a
// float/object dtype (never truncated), or a value outside T's range (never wrapped).
template <typename T>
CArray<T> int_array(const py::array& a, const char* name) {
    const std::string what(name);
    if (a.ndim() != 1) throw py::value_error(what + " must be a 1-D array, got " + std::to_string(a.ndim()) + " dimensions");
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u' && kind != 'b')
        throw py::value_error(what + " must be an integer array, got dtype " + std::string(py::str(a.dtype())));
    if (kind == 'u' && a.dtype().itemsize() == 8) {
        auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        auto r = u.template unchecked<1>();
        for (py::ssize_t i = 0; i < r.shape(0); ++i)
            if (r(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
                throw py::value_error(what + "[" + std::to_string(i) + "] = " + std::to_string(r(i)) + " is out of range");
    } else {
        auto w = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        auto r = w.template unchecked<1>();
        for (py::ssize_t i = 0; i < r.shape(0); ++i)
            if (r(i) < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                (std::numeric_limits<T>::max() < std::numeric_limits<int64_t>::max() &&
                 r(i) > static_cast<int64_t>(std::numeric_limits<T>::max())))
                throw py::value_error(what + "[" + std::to_string(i) + "] = " + std::to_string(r(i)) + " is out of range");
    }
    return CArray<T>::ensure(a);
}

// Offsets into an array of `size` elements: start at 0, non-decreasing, end at `size`.
inline void check_offsets(const std::vector<int64_t>& o, size_t size, const char* name) {
    const std::string what(name);
    if (o.empty()) throw py::value_error(what + " must hold at least one offset");
    if (o.front() != 0) throw py::value_error(what + " must start at 0");
    for (size_t i = 1; i < o.size(); ++i)
        if (o[i] < o[i - 1]) throw py::value_error(what + " must be non-decreasing (index " + std::to_string(i) + ")");
    if (o.back() != static_cast<int64_t>(size))
        throw py::value_error(what + " must end at " + std::to_string(size) + ", got " + std::to_string(o.back()));
}

template <typename T>
std::vector<T> to_vector(const CArray<T>& a) {
    auto r = a.template unchecked<1>();
    std::vector<T> v(static_cast<size_t>(r.shape(0)));
    for (py::ssize_t i = 0; i < r.shape(0); ++i) v[static_cast<size_t>(i)] = r(i);
    return v;
}

// A token id outside the vocabulary, at `position` of the document being processed.
struct BadToken {
    int64_t position;
    int64_t id;
};

// A growable array of trivially copyable values that, unlike std::vector, does not zero what
// it grows into: the output is written once, by the caller of extend().
template <typename T>
class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { std::free(data_); }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const T* data() const { return data_; }
    void clear() { size_ = 0; }
    void reserve(size_t cap) {
        if (cap <= cap_) return;
        T* p = static_cast<T*>(std::realloc(data_, cap * sizeof(T)));
        if (!p) throw std::bad_alloc();
        data_ = p;
        cap_ = cap;
    }
    // Grows by k uninitialised elements and returns a pointer to them; at least kSlack more
    // elements after them may be written (and are then overwritten or ignored).
    static constexpr size_t kSlack = 8;
    T* extend(size_t k) {
        if (size_ + k + kSlack > cap_) reserve(std::max(size_ + k + kSlack, cap_ + cap_ / 2 + 64));
        T* p = data_ + size_;
        size_ += k;
        return p;
    }

   private:
    T* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
};

// The output loss mask: 1 almost everywhere. Bytes past size() (up to the capacity) are kept at
// 1, so appending ones only moves the end; zeros are written, and remembered so that clear()
// can restore them.
class MaskBuffer {
   public:
    MaskBuffer() = default;
    MaskBuffer(const MaskBuffer&) = delete;
    MaskBuffer& operator=(const MaskBuffer&) = delete;
    ~MaskBuffer() { std::free(data_); }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const uint8_t* data() const { return data_; }
    void clear() {
        for (const auto& z : zero_spans_) {
            if (z.second <= 8)
                std::memcpy(data_ + z.first, &kOnes, 8);  // within the slack; ones over ones
            else
                std::memset(data_ + z.first, 1, z.second);
        }
        zero_spans_.clear();
        size_ = 0;
    }
    void reserve(size_t cap) {
        if (cap <= cap_) return;
        uint8_t* p = static_cast<uint8_t*>(std::realloc(data_, cap));
        if (!p) throw std::bad_alloc();
        std::memset(p + cap_, 1, cap - cap_);
        data_ = p;
        cap_ = cap;
    }
    void ones(size_t k) {
        if (size_ + k + 8 > cap_) reserve(std::max(size_ + k + 8, cap_ + cap_ / 2 + 64));
        size_ += k;
    }
    void zeros(size_t k) {
        if (k == 0) return;
        if (size_ + k + 8 > cap_) reserve(std::max(size_ + k + 8, cap_ + cap_ / 2 + 64));
        if (k < 8) {  // k zero bytes, then ones (what lies past size() anyway)
            const uint64_t v = kOnes & ~((uint64_t{1} << (8 * k)) - 1);
            std::memcpy(data_ + size_, &v, 8);
        } else {
            std::memset(data_ + size_, 0, k);
        }
        zero_spans_.emplace_back(size_, k);
        size_ += k;
    }

   private:
    static constexpr uint64_t kOnes = 0x0101010101010101ULL;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
    std::vector<std::pair<size_t, size_t>> zero_spans_;
};

// A word whose draw succeeded: [i, j) and its hash key (then its record offset), then the
// translation chosen (nullptr: not a candidate) and its language.
struct Drawn {
    int64_t i, j;
    uint64_t key;
    const int32_t* tr;
    int64_t lang;
};

// Per-thread working memory of CodeswitchEngine::process, reused between documents.
struct Scratch {
    std::vector<uint64_t> starts, drawn_bits;
    std::vector<Drawn> drawn;
};

struct Counts {
    int64_t words = 0;
    int64_t eligible = 0;  // words whose first token starts some source sequence
    int64_t drawn = 0;     // eligible words whose draw fell below the ratio (looked up)
    int64_t substituted = 0;
    std::vector<int64_t> per_language;

    explicit Counts(size_t n_languages = 0) : per_language(n_languages, 0) {}
    void add(const Counts& o) {
        words += o.words;
        eligible += o.eligible;
        drawn += o.drawn;
        substituted += o.substituted;
        for (size_t i = 0; i < per_language.size(); ++i) per_language[i] += o.per_language[i];
    }
    // [words, eligible, drawn, substituted, per language...] (what Python's CodeswitchStats reads)
    py::array_t<int64_t> as_array() const {
        py::array_t<int64_t> a(static_cast<py::ssize_t>(4 + per_language.size()));
        int64_t* p = a.mutable_data();
        p[0] = words;
        p[1] = eligible;
        p[2] = drawn;
        p[3] = substituted;
        for (size_t l = 0; l < per_language.size(); ++l) p[4 + l] = per_language[l];
        return a;
    }
};

}  // namespace cs
}  // namespace prealign
