#pragma once
// A value travelling along an edge: the run input, an agent's output, an agent's error.
// The engine never looks inside. The embedder owns the representation and supplies the
// deleter (the Python bindings use one that takes the GIL), so the core stays free of
// any interpreter and can be tested in plain C++ under sanitizers.
#include <memory>

namespace counterpoint {

using Payload = std::shared_ptr<void>;

}  // namespace counterpoint
