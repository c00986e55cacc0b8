// Op schemas of the `star` library and the Python entry point of star_ext._C.
//
// The kernels register themselves per device in cpu/<op>.cpp and cuda/<op>.cu.
// Forward and backward are separate ops so torch.compile and AOT autograd can
// trace them; their autograd kernels are in autograd.cpp, their C++ API in
// ops.h, and the fake (meta) kernels torch.compile needs in star_ext/ops.py.
#include <torch/library.h>

#ifdef STAR_PYTHON_MODULE
#include <Python.h>
#endif

TORCH_LIBRARY(star, m) {
  m.def("keypoint_pool(Tensor feat, Tensor kpts, float sigma, float eps=1e-06) -> Tensor");
  m.def(
      "keypoint_pool_backward(Tensor grad_out, Tensor feat, Tensor kpts, float sigma, float eps, "
      "bool[2] output_mask) -> (Tensor, Tensor)");

  m.def("guided_gem_pool(Tensor x, Tensor weight, Tensor p, float eps=1e-06, float floor=0.0) -> Tensor");
  m.def(
      "guided_gem_pool_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor p, float eps, float floor, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  m.def(
      "keypoint_graph_attention(Tensor h, Tensor a_src, Tensor a_dst, Tensor rowptr, Tensor col, "
      "float negative_slope=0.2, Tensor? edge_keep=None, float keep_scale=1.0) -> Tensor");
  m.def(
      "keypoint_graph_attention_backward(Tensor grad_out, Tensor h, Tensor a_src, Tensor a_dst, "
      "Tensor rowptr, Tensor col, float negative_slope, Tensor? edge_keep, float keep_scale, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

#ifdef STAR_PYTHON_MODULE
// `import star_ext._C` loads this library, which runs the registrations above.
// The module itself is empty: everything is reached through torch.ops.star.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif  // STAR_PYTHON_MODULE
