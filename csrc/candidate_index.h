// The candidate index of the codeswitching pass: every table source packed into one record with
// its translations, found by an open-addressing hash of its token sequence.
#pragma once

#include "codeswitch_util.h"

namespace prealign {
namespace cs {

class CandidateIndex {
   protected:
    // Packs each candidate into one contiguous record (one or two cache lines per substitution)
    // and indexes the records by an open-addressing hash of their source sequence; a slot holds
    // (32-bit fingerprint << 32) | (record offset + 1), 0 when empty.
    void build(const std::vector<int32_t>& src_tokens, const std::vector<int64_t>& src_offsets,
               const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& group_lang,
               const std::vector<int64_t>& group_trans_offsets, const std::vector<int64_t>& trans_offsets,
               const std::vector<int32_t>& trans_tokens, size_t vocab, size_t n_languages, std::vector<uint8_t>& flags) {
        auto malformed = [](const char* what) {
            return std::invalid_argument(std::string("malformed compiled codeswitch table (") + what + ")");
        };
        if (src_offsets.empty() || group_offsets.size() != src_offsets.size() || group_trans_offsets.size() != group_lang.size() + 1 ||
            trans_offsets.empty() || src_offsets.back() != static_cast<int64_t>(src_tokens.size()) ||
            group_offsets.back() != static_cast<int64_t>(group_lang.size()) ||
            group_trans_offsets.back() != static_cast<int64_t>(trans_offsets.size()) - 1 ||
            trans_offsets.back() != static_cast<int64_t>(trans_tokens.size()))
            throw malformed("offsets");
        for (int32_t t : src_tokens)
            if (t < 0 || static_cast<size_t>(t) >= vocab) throw malformed("source id outside the vocabulary");
        for (int32_t t : trans_tokens)
            if (t < 0 || static_cast<size_t>(t) >= vocab) throw malformed("translation id outside the vocabulary");
        const size_t n_cand = src_offsets.size() - 1;
        size_t cap = 16;
        while (cap < 2 * n_cand) cap <<= 1;
        slots_.assign(cap, 0);
        slot_mask_ = cap - 1;
        max_src_len_ = 0;
        for (size_t c = 0; c < n_cand; ++c) {
            const int64_t b = src_offsets[c], e = src_offsets[c + 1];
            const int64_t g0 = group_offsets[c], g1 = group_offsets[c + 1];
            if (e <= b || g1 <= g0) throw malformed("empty source or no translations");
            if (records_.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max() - 1)) throw malformed("too large");
            const int32_t at = static_cast<int32_t>(records_.size());
            records_.push_back(static_cast<int32_t>(e - b));
            records_.insert(records_.end(), src_tokens.begin() + b, src_tokens.begin() + e);
            // [src_len, src..., n_groups, {lang, n_trans, first}..., {offset}..., {len, ids...}...]: group
            // g's translations' offsets (from the record's start) are at [first, first + n_trans).
            records_.push_back(static_cast<int32_t>(g1 - g0));
            const size_t ghead = records_.size();
            const int64_t tr0 = group_trans_offsets[g0];
            if (group_trans_offsets[g1] <= tr0) throw malformed("empty language group");
            const size_t thead = ghead + 3 * static_cast<size_t>(g1 - g0);
            records_.resize(thead + static_cast<size_t>(group_trans_offsets[g1] - tr0));
            for (int64_t g = g0; g < g1; ++g) {
                if (group_lang[g] < 0 || static_cast<size_t>(group_lang[g]) >= n_languages) throw malformed("language");
                const int64_t t0 = group_trans_offsets[g], t1 = group_trans_offsets[g + 1];
                if (t1 <= t0) throw malformed("empty language group");
                int32_t* ge = records_.data() + ghead + 3 * static_cast<size_t>(g - g0);
                ge[0] = group_lang[g];
                ge[1] = static_cast<int32_t>(t1 - t0);
                ge[2] = static_cast<int32_t>(thead + static_cast<size_t>(t0 - tr0) - static_cast<size_t>(at));
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t tb = trans_offsets[t], te = trans_offsets[t + 1];
                    if (te <= tb) throw malformed("empty translation");
                    records_[thead + static_cast<size_t>(t - tr0)] = static_cast<int32_t>(records_.size() - static_cast<size_t>(at));
                    records_.push_back(static_cast<int32_t>(te - tb));
                    records_.insert(records_.end(), trans_tokens.begin() + tb, trans_tokens.begin() + te);
                }
            }
            max_src_len_ = std::max<int64_t>(max_src_len_, e - b);
            flags[static_cast<size_t>(src_tokens[static_cast<size_t>(b)])] |= kCanStart;
            if (lookup(src_tokens.data() + b, e - b) >= 0) throw malformed("duplicate source");
            const uint64_t h = hash_seq(src_tokens.data() + b, e - b);
            uint64_t s = h & slot_mask_;
            while (slots_[s]) s = (s + 1) & slot_mask_;
            slots_[s] = ((h >> 32) << 32) | (static_cast<uint64_t>(at) + 1);
        }
        records_.insert(records_.end(), 4, 0);  // padding read by append_short
    }

    template <typename T>
    static uint64_t hash_seq(const T* p, int64_t n) {
        uint64_t h = static_cast<uint64_t>(n) * kGolden;
        for (int64_t k = 0; k < n; ++k) h = (h ^ static_cast<uint32_t>(p[k])) * 0x100000001B3ULL;
        return mix64(h);
    }

    // Offset of the record whose source is p[0..n), or -1.
    template <typename T>
    int64_t lookup(const T* p, int64_t n) const {
        const int64_t first = probe(hash_seq(p, n), p, n, false);
        return first < 0 ? -1 : probe_verify(first, p, n);
    }

    // The first record (offset) in the probe sequence of `key` whose fingerprint matches, or -1.
    // With verify=false the record itself is not read (so a caller can prefetch it first).
    template <typename T>
    int64_t probe(uint64_t key, const T* p, int64_t n, bool verify) const {
        const uint64_t fp = key >> 32;
        for (uint64_t s = key & slot_mask_;; s = (s + 1) & slot_mask_) {
            const uint64_t slot = slots_[s];
            if (!slot) return -1;
            if ((slot >> 32) != fp) continue;
            const int64_t at = static_cast<int64_t>((slot & 0xFFFFFFFFULL) - 1);
            if (!verify || matches(at, p, n)) return at;
        }
    }

    // `at` came from probe(): verify it, and on a fingerprint collision continue the probe.
    template <typename T>
    int64_t probe_verify(int64_t at, const T* p, int64_t n) const {
        if (matches(at, p, n)) return at;
        const uint64_t key = hash_seq(p, n);
        return probe(key, p, n, true);
    }

    // hash_seq() for n <= 4 without a data-dependent loop; p[0..4) must be readable.
    template <typename T>
    static uint64_t hash_short(const T* p, int64_t n) {
        uint64_t h = static_cast<uint64_t>(n) * kGolden;
        for (int64_t k = 0; k < 4; ++k) {
            const uint64_t hk = (h ^ static_cast<uint32_t>(p[k])) * 0x100000001B3ULL;
            h = k < n ? hk : h;
        }
        return mix64(h);
    }

    // matches() for n <= 4 without a data-dependent loop; p[0..4) must be readable (a record
    // holds at least 5 ints after its length).
    template <typename T>
    bool matches_short(int64_t at, const T* p, int64_t n) const {
        const int32_t* rec = records_.data() + at;
        uint32_t diff = static_cast<uint32_t>(rec[0]) ^ static_cast<uint32_t>(n);
        for (int64_t k = 0; k < 4; ++k)
            diff |= (static_cast<uint32_t>(rec[1 + k]) ^ static_cast<uint32_t>(p[k])) & (k < n ? ~0u : 0u);
        return diff == 0;
    }

    template <typename T>
    bool matches(int64_t at, const T* p, int64_t n) const {
        const int32_t* rec = records_.data() + at;
        if (rec[0] != n) return false;
        for (int64_t k = 0; k < n; ++k)
            if (rec[1 + k] != static_cast<int32_t>(p[k])) return false;
        return true;
    }

    std::vector<int32_t> records_;
    std::vector<uint64_t> slots_;
    uint64_t slot_mask_ = 0;
    int64_t max_src_len_ = 0;
};

}  // namespace cs
}  // namespace prealign
