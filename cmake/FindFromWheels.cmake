# Locates oneTBB (tbb-devel wheel) and nlohmann/json (nlohmann-json wheel) through the
# Python interpreter running the build. Works inside pip's isolated build environment,
# where the wheels live in a temporary prefix CMake would never search on its own.
include("${CMAKE_CURRENT_LIST_DIR}/StableDependencyPaths.cmake")

function(counterpoint_locate_wheel_dependencies)
  # A TBB_DIR found here is asked for again on every configure: pip builds in a new
  # temporary environment each time, and the one cached by the previous build is gone
  # (find_package would then search the system and might take a system TBB). A TBB_DIR
  # given by the user (-DTBB_DIR=...) is kept.
  if(TBB_DIR AND TBB_DIR STREQUAL COUNTERPOINT_TBB_DIR_FROM_WHEEL)
    unset(TBB_DIR CACHE)
  endif()
  if(NOT TBB_DIR)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c [=[
import importlib.metadata as md, pathlib
try:
    files = md.files("tbb-devel") or []
except md.PackageNotFoundError:
    files = []
for f in files:
    if f.name == "TBBConfig.cmake":
        print(pathlib.Path(f.locate()).resolve().parent)
        break
]=]
      OUTPUT_VARIABLE _tbb_dir OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_tbb_dir)
      set(TBB_DIR "${_tbb_dir}" CACHE PATH "oneTBB CMake config from the tbb-devel wheel" FORCE)
      set(COUNTERPOINT_TBB_DIR_FROM_WHEEL "${_tbb_dir}" CACHE INTERNAL "")
    else()
      message(FATAL_ERROR
        "counterpoint: the tbb-devel wheel is not installed for ${Python_EXECUTABLE}. "
        "Run `pip install tbb-devel==2023.2.0` (pip does this for you in `pip install .`), "
        "or pass -DTBB_DIR=<dir holding TBBConfig.cmake>.")
    endif()
  endif()

  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c "import nlohmann_json; print(nlohmann_json.get_include())"
    OUTPUT_VARIABLE _json_include OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _json_rc ERROR_QUIET)
  if(NOT _json_rc EQUAL 0 OR NOT EXISTS "${_json_include}/nlohmann/json.hpp")
    find_path(_json_include nlohmann/json.hpp)
  endif()
  if(NOT _json_include OR NOT EXISTS "${_json_include}/nlohmann/json.hpp")
    message(FATAL_ERROR
      "counterpoint: nlohmann/json.hpp not found. Run `pip install nlohmann-json`.")
  endif()
  counterpoint_stable_include_dir(_json_include "${_json_include}" nlohmann_json nlohmann)
  set(COUNTERPOINT_NLOHMANN_INCLUDE "${_json_include}" PARENT_SCOPE)
endfunction()
