"""The installed package imports cleanly and exposes its public names."""

from __future__ import annotations

import os
import subprocess
import sys

import counterpoint as cp


def test_import_from_a_different_cwd(tmp_path):
    code = (
        "import counterpoint, os, sys\n"
        "print(counterpoint.__file__)\n"
        "print(counterpoint.TBB_VERSION)\n"
        "g = counterpoint.Graph().add('a', lambda x: x + 1)\n"
        "print(g.compile().invoke(41))\n"
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    location, version, answer = proc.stdout.split("\n")[:3]
    assert not location.startswith(str(tmp_path))
    assert os.path.basename(os.path.dirname(location)) == "counterpoint"
    assert version
    assert answer == "42"
    assert "Warning" not in proc.stderr
    assert proc.stderr == ""


def test_import_with_warnings_as_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", "import counterpoint"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_tbb_version_is_non_empty_string():
    assert isinstance(cp.TBB_VERSION, str)
    assert cp.TBB_VERSION.strip() != ""
    assert cp.TBB_VERSION[0].isdigit()
    assert "." in cp.TBB_VERSION


def test_version():
    assert isinstance(cp.__version__, str)
    assert cp.__version__


def test_all_names_exist():
    assert cp.__all__
    for name in cp.__all__:
        assert hasattr(cp, name), name
    assert len(set(cp.__all__)) == len(cp.__all__)


def test_public_api_names_are_exported():
    expected = {
        "AgentError",
        "CompiledGraph",
        "CounterpointError",
        "Event",
        "Graph",
        "GraphError",
        "RunCancelled",
        "TBB_VERSION",
    }
    assert expected <= set(cp.__all__)


def test_exception_hierarchy():
    for exc in (cp.AgentError, cp.GraphError, cp.RunCancelled):
        assert issubclass(exc, cp.CounterpointError)
    assert issubclass(cp.CounterpointError, Exception)


def test_star_import(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from counterpoint import *; print(Graph, GraphError, TBB_VERSION)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_importing_counterpoint_imports_no_optional_integration():
    code = (
        "import sys, counterpoint\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core', 'langchain', 'opentelemetry', 'psycopg', 'pydantic', 'ray', 'tqdm', "
        "'yaml'))\n"
        "print(loaded)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _run(code, tmp_path):
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_import_alone_loads_no_langchain(tmp_path):
    # Installed or not, langchain-core is imported at the first compile(), not before.
    out = _run("import sys, counterpoint\n"
               "print(any(m.startswith(('langchain', 'langsmith')) for m in sys.modules))\n",
               tmp_path)
    assert out == ["False"]


def test_without_langchain_nothing_of_it_is_imported(tmp_path):
    # sys.modules[name] = None makes both find_spec() and import see it as absent.
    out = _run(
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"
        "import counterpoint as cp\n"
        "app = cp.Graph().add('a', lambda x: x + 1).compile()\n"
        "print(type(app).__name__, app.invoke(1), list(app.stream(1)))\n"
        "try:\n"
        "    app.stream(1, stream_mode='messages')\n"
        "except ImportError as error:\n"
        "    print('langchain-core' in str(error))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'langsmith'))))\n",
        tmp_path)
    assert out == ["CompiledGraph", "2", "[2]", "True", "['langchain_core']"]


def test_instrument_imports_opentelemetry_only_when_called(tmp_path):
    # Without langchain-core, whose langsmith imports OpenTelemetry at the first compile().
    out = _run(
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"
        "import counterpoint as cp\n"
        "cp.uninstrument()\n"
        "cp.Graph().add('a', lambda x: x).compile().invoke(1)\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))\n"
        "cp.instrument()\n"
        "print('opentelemetry.trace' in sys.modules)\n",
        tmp_path)
    assert out == ["False", "True"]


def test_without_opentelemetry_instrument_says_what_to_install(tmp_path):
    out = _run(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "import counterpoint as cp\n"
        "try:\n"
        "    cp.instrument()\n"
        "except ImportError as error:\n"
        "    print('counterpoint[otel]' in str(error))\n"
        "print(cp.Graph().add('a', lambda x: x + 1).compile().invoke(1))\n",
        tmp_path)
    assert out == ["True", "2"]


def test_without_psycopg_a_postgres_store_says_what_to_install(tmp_path):
    out = _run(
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import counterpoint as cp\n"
        "for make in (lambda: cp.PostgresStore('postgresql://localhost/runs'),\n"
        "             lambda: cp.Graph().add('a', len).compile(store='postgresql://h/db')):\n"
        "    try:\n"
        "        make()\n"
        "    except ImportError as error:\n"
        "        print('pip install \"counterpoint[postgres]\"' in str(error))\n",
        tmp_path)
    assert out == ["True", "True"]
