// The .npy view (DESIGN.md §6): a synthesised NPY header in front of the
// tensor's own bytes, so numpy.load(path, mmap_mode="r") opens a tensor
// file directly. The bytes after the header are served zero-copy from the
// source like the raw tensor file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "stfs/format/safetensors.hpp"

namespace stfs {

// The NPY dtype string for `d` ("<f4"). BF16 and the 8-bit float formats,
// which numpy lacks, appear as unsigned integers of their width ("<u2",
// "|u1") holding the raw bit patterns; F6 and F4 have no whole-byte element
// and have no .npy file (nullopt).
std::optional<std::string_view> npy_descr(Dtype d);

// The NPY header (magic, version, length, dict, padding to a multiple of 64
// bytes) for tensor `t`; version 1.0, or 2.0 when the dict exceeds 64 KiB.
// nullopt for dtypes without a descr.
std::optional<std::string> npy_header(const TensorInfo& t);

// The reserved directory of the view.
inline constexpr std::string_view kNpyDir = "__npy__";

}  // namespace stfs
