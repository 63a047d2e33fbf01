// Python entry point of the extension. Operators register themselves with the dispatcher
// through TORCH_LIBRARY when this library is loaded; Python reaches them via torch.ops.sgfd_ext.
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY(sgfd_ext, m) {
  // Schemas are declared next to their kernels with TORCH_LIBRARY_FRAGMENT.
}

static PyModuleDef sgfd_ext_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&sgfd_ext_module); }
