// Shared declarations of the megatron_prealign._C extension.
// Each concern lives in its own translation unit and exposes a register_* function that
// module.cpp calls; nothing else is shared between them.
#pragma once

#include <pybind11/pybind11.h>

namespace prealign {

void register_codeswitch(pybind11::module_& m);

}  // namespace prealign
