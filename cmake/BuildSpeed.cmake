# Build-time settings for the pybind11 binding target.
#
# Where a fresh `pip install .` spends its compile time on 2 cores: every binding
# translation unit parses pybind11 (~3.5 s of CPU each, before any code of ours) and then
# generates code for pybind11's inline functions again (~4-5 s each), while the engine's
# TUs cost 0.3-7 s each (oneTBB's flow_graph.h and nlohmann/json.hpp are each included by
# only the one or two TUs that need them).
#  - pybind11_add_module enables LTO (-flto=auto) in Release. Kept on: the per-TU code
#    generation is then deferred to one link step, which emits pybind11's shared inline
#    code once instead of once per TU (measured: a binding TU costs ~40% less CPU with
#    LTO, far more than the link adds).
#  - A precompiled header of pybind11 (+ stl.h) for the binding TUs removes the repeated
#    parse. CMake force-includes it, so no source needs to change; every binding TU then
#    sees pybind11/stl.h, which also keeps the STL casters consistent across TUs (ODR).
#  - -O2 for the glue code of the bindings (the engine keeps Release's -O3): the glue
#    converts arguments and calls into the engine; -O3's extra inlining and unrolling
#    only lengthen the build there.
option(COUNTERPOINT_PCH "Precompile pybind11's headers for the binding translation units" ON)

function(counterpoint_binding_build_settings target)
  if(COUNTERPOINT_PCH)
    target_precompile_headers(${target} PRIVATE <pybind11/pybind11.h> <pybind11/stl.h>)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<CONFIG:Release>:-O2>)
    # With LTO, code generation happens at link time with the link's -O level.
    target_link_options(${target} PRIVATE $<$<CONFIG:Release>:-O2>)
  endif()
endfunction()
