# Stable paths for the third-party headers and libraries that come from pip's build
# environment (pybind11, tbb-devel, nlohmann-json).
#
# Why: `pip install .` builds in an isolated environment under a new temporary directory
# every time (/tmp/pip-build-env-XXXX/overlay/...). Compiling against the headers there
# puts that directory into every compile and link command, so the next `pip install`
# (the README's `pip install ".[test]"` after `pip install .`) finds every command
# changed and recompiles everything from scratch, although scikit-build-core keeps the
# build directory (build/{wheel_tag}). Mirroring those files into the build tree gives the
# commands the same paths on every build. A file is copied only when its content changed,
# so timestamps move only when a dependency really changed, and then exactly the objects
# that include it rebuild.
#
# Turn it off with -DCOUNTERPOINT_STABLE_DEPENDENCY_PATHS=OFF (the targets then use the
# wheels' own directories).

option(COUNTERPOINT_STABLE_DEPENDENCY_PATHS
  "Compile and link against copies of third-party headers/libraries in the build tree" ON)

set(COUNTERPOINT_DEPS_MIRROR "${CMAKE_BINARY_DIR}/_deps" CACHE INTERNAL "")

# Copies the files under <src> to <dst>, writing only those whose content differs, and
# deletes files under <dst> that <src> no longer has.
function(counterpoint_mirror_tree src dst)
  file(GLOB_RECURSE _new LIST_DIRECTORIES false RELATIVE "${src}" "${src}/*")
  file(GLOB_RECURSE _old LIST_DIRECTORIES false RELATIVE "${dst}" "${dst}/*")
  foreach(_file IN LISTS _new)
    if(_file MATCHES "(^|/)__pycache__/|\\.py$")
      continue()
    endif()
    get_filename_component(_dir "${dst}/${_file}" DIRECTORY)
    file(MAKE_DIRECTORY "${_dir}")
    file(COPY_FILE "${src}/${_file}" "${dst}/${_file}" ONLY_IF_DIFFERENT)
  endforeach()
  if(_old)
    if(_new)
      list(REMOVE_ITEM _old ${_new})
    endif()
    foreach(_file IN LISTS _old)
      file(REMOVE "${dst}/${_file}")
    endforeach()
  endif()
endfunction()

# Points the imported target's include directories at mirrors of the given
# subdirectories (e.g. "tbb;oneapi"), taken from each of its current include directories.
function(counterpoint_stable_includes target name subdirs)
  if(NOT COUNTERPOINT_STABLE_DEPENDENCY_PATHS)
    return()
  endif()
  if(NOT TARGET ${target})
    message(STATUS "counterpoint: no target ${target}: ${name} headers are not mirrored, "
                   "so a new pip build environment recompiles everything")
    return()
  endif()
  get_target_property(_includes ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _includes)
    return()
  endif()
  set(_mirror "${COUNTERPOINT_DEPS_MIRROR}/${name}/include")
  set(_result "")
  foreach(_inc IN LISTS _includes)
    set(_found FALSE)
    foreach(_sub IN LISTS subdirs)
      if(IS_DIRECTORY "${_inc}/${_sub}")
        counterpoint_mirror_tree("${_inc}/${_sub}" "${_mirror}/${_sub}")
        set(_found TRUE)
      endif()
    endforeach()
    if(_found)
      list(APPEND _result "${_mirror}")
    else()
      list(APPEND _result "${_inc}")  # e.g. a generator expression: leave it alone
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _result)
  set_property(TARGET ${target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_result}")
endfunction()

# Points the imported shared library target at a copy of its library file(s).
function(counterpoint_stable_library target name)
  if(NOT COUNTERPOINT_STABLE_DEPENDENCY_PATHS OR NOT TARGET ${target})
    return()
  endif()
  get_target_property(_configs ${target} IMPORTED_CONFIGURATIONS)
  set(_dir "${COUNTERPOINT_DEPS_MIRROR}/${name}/lib")
  file(MAKE_DIRECTORY "${_dir}")
  foreach(_config IN LISTS _configs)
    get_target_property(_lib ${target} IMPORTED_LOCATION_${_config})
    if(_lib AND EXISTS "${_lib}")
      get_filename_component(_file "${_lib}" NAME)
      file(COPY_FILE "${_lib}" "${_dir}/${_file}" ONLY_IF_DIFFERENT)
      set_property(TARGET ${target} PROPERTY IMPORTED_LOCATION_${_config} "${_dir}/${_file}")
    endif()
  endforeach()
endfunction()

# Returns in <out_var> a mirror of the include directory <dir>'s <subdirs>.
function(counterpoint_stable_include_dir out_var dir name subdirs)
  if(NOT COUNTERPOINT_STABLE_DEPENDENCY_PATHS)
    set(${out_var} "${dir}" PARENT_SCOPE)
    return()
  endif()
  set(_mirror "${COUNTERPOINT_DEPS_MIRROR}/${name}/include")
  foreach(_sub IN LISTS subdirs)
    counterpoint_mirror_tree("${dir}/${_sub}" "${_mirror}/${_sub}")
  endforeach()
  set(${out_var} "${_mirror}" PARENT_SCOPE)
endfunction()
