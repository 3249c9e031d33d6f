# The Hopper kernels really use the Hopper units: every sm90 object's SASS has HGMMA (wgmma),
# UTMALDG (TMA loads) and USETMAXREG (register reallocation). Skipped (exit 77) without cuobjdump.
#   -DCUOBJDUMP=<path or empty> -DOBJECTS=<;-list of object files>
if(NOT CUOBJDUMP OR NOT EXISTS "${CUOBJDUMP}")
  message("SASS check skipped: no cuobjdump (scripts/deps fetches one where PyPI is reachable)")
  cmake_language(EXIT 77)
endif()
# cuobjdump -sass runs nvdisasm, found beside it or on PATH.
get_filename_component(tool_dir "${CUOBJDUMP}" DIRECTORY)
set(ENV{PATH} "${tool_dir}:$ENV{PATH}")
foreach(obj IN LISTS OBJECTS)
  execute_process(COMMAND "${CUOBJDUMP}" -sass "${obj}" OUTPUT_VARIABLE sass RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cuobjdump failed on ${obj}")
  endif()
  foreach(op HGMMA UTMALDG USETMAXREG)
    string(REGEX MATCHALL "${op}[.A-Z0-9x_]*" hits "${sass}")
    list(LENGTH hits n)
    if(n EQUAL 0)
      message(FATAL_ERROR "${obj}: no ${op} in the SASS")
    endif()
    message("${obj}: ${n} x ${op}")
  endforeach()
endforeach()
