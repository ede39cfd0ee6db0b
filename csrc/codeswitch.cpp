// Python binding of the codeswitching pass: megatron_prealign._C.CodeswitchEngine.
#include "codeswitch_engine.h"
#include "common.h"

namespace prealign {

void register_codeswitch(py::module_& m) {
    using cs::CodeswitchEngine;
    py::class_<CodeswitchEngine>(m, "CodeswitchEngine",
                                 "Compiled codeswitcher (built by megatron_prealign.data.codeswitch.Codeswitcher).")
        .def(py::init<const py::array&, const py::array&, const py::array&, const py::array&, const py::array&,
                      const py::array&, const py::array&, int64_t, const py::array&, const py::array&, double, bool,
                      uint64_t, const py::array&, const py::array&, const py::array&>(),
             py::arg("src_tokens"), py::arg("src_offsets"), py::arg("group_offsets"), py::arg("group_lang"),
             py::arg("group_trans_offsets"), py::arg("trans_offsets"), py::arg("trans_tokens"),
             py::arg("n_languages"), py::arg("word_start"), py::arg("special"), py::arg("ratio"),
             py::arg("input_only"), py::arg("seed"), py::arg("opener"), py::arg("follow"), py::arg("lead"))
        .def("apply", &CodeswitchEngine::apply, py::arg("tokens"), py::arg("doc_index"),
             "Codeswitch one document: (int32 tokens, doc_index) -> (int32 tokens, uint8 mask, int64 counts "
             "[words, eligible, drawn, substituted, per language...]).")
        .def("process_dataset", &CodeswitchEngine::process_dataset, py::arg("in_bin"), py::arg("out_bin"),
             py::arg("out_mask"), py::arg("lengths"), py::arg("pointers"), py::arg("itemsize"), py::arg("threads"),
             py::arg("chunk_tokens"), py::arg("progress"),
             "Rewrite a Megatron .bin (sequence i uses doc_index i) into out_bin/out_mask; returns "
             "(new int32 sequence lengths, int64 counts [words, eligible, drawn, substituted, per language...]).");
}

}  // namespace prealign
