// Input checks shared by every operator: each kernel validates its arguments at the door.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/isfinite.h>
#include <c10/util/Exception.h>

#define SGFD_CHECK_DIM(t, n) \
  TORCH_CHECK((t).dim() == (n), #t " must have ", (n), " dimensions, got ", (t).dim())

#define SGFD_CHECK_DTYPE(t, dt) \
  TORCH_CHECK((t).scalar_type() == (dt), #t " must be ", (dt), ", got ", (t).scalar_type())

#define SGFD_CHECK_FLOATING(t)                                                          \
  TORCH_CHECK((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kDouble ||    \
                  (t).scalar_type() == at::kBFloat16 || (t).scalar_type() == at::kHalf, \
              #t " must be a floating tensor, got ", (t).scalar_type())

#define SGFD_CHECK_SAME_DEVICE(a, b)                                                       \
  TORCH_CHECK((a).device() == (b).device(), #a " and " #b " must be on the same device, " \
              "got ", (a).device(), " and ", (b).device())

#define SGFD_CHECK_FINITE(t) \
  TORCH_CHECK(at::isfinite(t).all().item<bool>(), #t " contains NaN or infinite values")
