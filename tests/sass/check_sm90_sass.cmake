# The Hopper kernels really use the Hopper units: every sm90 object's SASS has HGMMA (wgmma),
# UTMALDG (TMA loads) and USETMAXREG (register reallocation). And the forward's intra-warpgroup
# overlap survives ptxas: after each wait for S (`WARPGROUP.DEPBAR.LE gsb0, 0x1`) exponentials run
# before the wait for O += P V (`... 0x0`); ptxas hoisted that wait above the whole softmax until
# src/kernels/sm90/wait_order.h pinned it (bench/NOTES.md, session 16). Skipped (exit 77) without
# cuobjdump.
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
  if(obj MATCHES "sm90_fwd_")
    string(REGEX MATCHALL "DEPBAR\\.LE gsb0, 0x[01]|MUFU\\.EX2" events "${sass}")
    set(after_s_wait OFF)
    set(overlapped 0)
    foreach(event IN LISTS events)
      if(event STREQUAL "DEPBAR.LE gsb0, 0x1")
        set(after_s_wait ON)
        set(exponentials 0)
      elseif(event STREQUAL "MUFU.EX2")
        math(EXPR exponentials "${exponentials} + 1")
      elseif(after_s_wait)  # the wait for O += P V
        if(exponentials EQUAL 0)
          message(FATAL_ERROR "${obj}: the wait for O += P V comes right after the wait for S, with no "
                              "exponential between them: ptxas hoisted it above the softmax (wait_order.h)")
        endif()
        math(EXPR overlapped "${overlapped} + 1")
        set(after_s_wait OFF)
      endif()
    endforeach()
    if(overlapped EQUAL 0)
      message(FATAL_ERROR "${obj}: no overlapped key-block loop found (no wait for S with one GEMM still in flight)")
    endif()
    message("${obj}: ${overlapped} overlapped loops, each with its softmax ahead of the P V wait")
  endif()
endforeach()
