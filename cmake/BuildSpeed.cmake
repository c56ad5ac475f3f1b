# Build-time settings for the pybind11 binding target (_core).
#
# Where a fresh `pip install .` spent its compile time on 2 cores (per-TU CPU seconds,
# measured with -ftime-report and /usr/bin/time): each of the ten binding translation
# units parsed pybind11 (~3.5 s) and instantiated much the same pybind11 machinery again
# (~1.5 s for a TU that only defines the module), before any code of its own; pybind11's
# default LTO then generated all their code once more in a mostly serial link (~20 s). The
# engine's TUs cost 0.3-7 s each: oneTBB's flow_graph.h (~1.6 s) and nlohmann/json.hpp
# (~2 s) are included only by the TUs that need them.
#
#  - Unity build of the bindings: all binding sources compile as one TU, so pybind11 is
#    parsed and its templates instantiated once. Measured on the same machine state, one
#    after the other: 72 s of CPU for the ten TUs with a precompiled header, 21 s as one
#    unity TU. Rule for cpp/bindings: helpers in an anonymous namespace must have names
#    unique across the binding files (a clash is a compile error, never a silent one).
#  - No LTO for the bindings: the unity TU already gives the optimiser all binding code at
#    once, and LTO's link step would be the last, serial part of the build. (The engine
#    is a static library compiled without LTO either way.) -DCMAKE_INTERPROCEDURAL_
#    OPTIMIZATION=ON turns it back on.
#  - -O2 for the binding glue (the engine keeps Release's -O3): the glue converts
#    arguments and calls into the engine; -O3's extra inlining and unrolling only lengthen
#    the build there.
option(COUNTERPOINT_UNITY_BINDINGS "Compile the binding sources as one translation unit" ON)

# pybind11_add_module turns LTO on unless this is defined.
if(NOT DEFINED CMAKE_INTERPROCEDURAL_OPTIMIZATION)
  set(CMAKE_INTERPROCEDURAL_OPTIMIZATION OFF)
endif()

function(counterpoint_binding_build_settings target)
  if(COUNTERPOINT_UNITY_BINDINGS)
    # Batch size 0: every source of the target in one unity file.
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<CONFIG:Release>:-O2>)
  endif()
endfunction()
