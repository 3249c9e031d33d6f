// The CUTLASS element type of a flashattn dtype (kernels take float16 and bfloat16).
#pragma once

#include <cutlass/numeric_types.h>

#include "flashattn/flashattn_c.h"

namespace flashattn::sm80 {

template <int kDtype> struct ElementOf;
template <> struct ElementOf<FLASHATTN_FLOAT16> { using type = cutlass::half_t; };
template <> struct ElementOf<FLASHATTN_BFLOAT16> { using type = cutlass::bfloat16_t; };

}  // namespace flashattn::sm80
