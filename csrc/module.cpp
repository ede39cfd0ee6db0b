// Entry point of the megatron_prealign._C extension module.
#include "common.h"

PYBIND11_MODULE(_C, m) {
    m.doc() = "megatron-prealign compiled passes over Megatron token streams";
    prealign::register_codeswitch(m);
}
