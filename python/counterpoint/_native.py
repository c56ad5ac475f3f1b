"""Loads the compiled engine and checks that the oneTBB it loaded is the one it was built for."""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "counterpoint's native engine (counterpoint._core) could not be loaded: "
        f"{exc}. It needs libtbb.so.12 from the `tbb` wheel; reinstall with "
        "`pip install --force-reinstall counterpoint`."
    ) from exc


def _check_tbb() -> None:
    compiled = _core.tbb_compiled_interface_version()
    loaded = _core.tbb_runtime_interface_version()
    # oneTBB keeps binary compatibility within a major interface version, and a newer
    # library serves older headers; an older library may lack what the engine calls.
    if loaded // 1000 != compiled // 1000 or loaded < compiled:
        raise ImportError(
            f"counterpoint was built against oneTBB interface {compiled} but loaded "
            f"oneTBB {_core.tbb_runtime_version()} (interface {loaded}). Install the "
            "matching runtime: `pip install tbb==2023.2.0`."
        )


_check_tbb()
TBB_VERSION: str = _core.tbb_runtime_version()
