"""The hostile corpus: strategy snippets that try to leave the sandbox, and what must happen.

Each entry is ``(id, code, kind, words)``: ``kind`` is the outcome - ``static`` (refused before
it runs), ``forbidden`` (refused at run time by the audit hook or the kernel), a limit
(``timeout``/``cpu``, ``memory``, ``output``) or ``raised`` (the strategy's own exception) -
and every word in ``words`` must appear in the message (what was refused, and the line).
``{scratch}`` is replaced by a directory outside the sandbox that must stay empty.

``RUNTIME`` holds snippets the static check would refuse; the tests run them with the static
check bypassed to prove the process-level layers refuse them on their own.
"""
from __future__ import annotations


def descendants(since: float | None = None) -> set[int]:
    """PIDs of every live descendant of this process (psutil), or only those started at or after
    ``since`` (epoch seconds): in a whole-suite run, other areas' tests may still own children."""
    import psutil

    try:
        return {p.pid for p in psutil.Process().children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE and (since is None or p.create_time() >= since)}
    except psutil.Error:
        return set()


T = "    return data.close * 0\n"

HOSTILE = [
    # -- refused before anything runs (static check), line named -------------------------------
    ("import_os", "import os\ndef signals(data):\n    os.system('id')\n" + T, "static", ["line 1", "import os"]),
    ("from_subprocess", "def signals(data):\n    from subprocess import run\n    run(['id'])\n" + T,
     "static", ["line 2", "import subprocess"]),
    ("socket", "import socket\ndef signals(data):\n    socket.create_connection(('127.0.0.1', 9))\n" + T,
     "static", ["line 1", "import socket"]),
    ("ctypes", "import ctypes\ndef signals(data):\n    ctypes.CDLL(None).system(b'id')\n" + T,
     "static", ["line 1", "import ctypes"]),
    ("importlib", "import importlib\ndef signals(data):\n    importlib.import_module('os')\n" + T,
     "static", ["line 1", "import importlib"]),
    ("dunder_import", "def signals(data):\n    m = __import__('o' + 's')\n" + T, "static", ["line 2", "__import__"]),
    ("eval_dynamic", "def signals(data):\n    s = '__imp' + 'ort__(\"os\")'\n    eval(s)\n" + T,
     "static", ["line 3", "eval"]),
    ("exec_compile", "def signals(data):\n    exec(compile('import os', 'x', 'exec'))\n" + T,
     "static", ["line 2", "exec"]),
    ("open_read", "def signals(data):\n    open('/etc/passwd').read()\n" + T, "static", ["line 2", "open"]),
    ("subclasses", "def signals(data):\n    ().__class__.__base__.__subclasses__()\n" + T,
     "static", ["line 2", "__subclasses__"]),
    ("getattr_dynamic", "def signals(data):\n    n = '__cla' + 'ss__'\n    getattr(data, n)\n" + T,
     "static", ["line 3", "getattr"]),
    ("func_globals", "def signals(data):\n    g = signals.__globals__\n" + T, "static", ["line 2", "__globals__"]),
    ("format_escape", "def signals(data):\n    '{0.__class__.__mro__}'.format(data)\n" + T,
     "static", ["line 2", "__class__"]),
    ("numpy_ctypeslib", "import numpy.ctypeslib\ndef signals(data):\n" + T, "static", ["line 1", "numpy.ctypeslib"]),
    ("pandas_reaches_os", "import pandas as pd\ndef signals(data):\n    pd.io.common.os.system('id')\n" + T,
     "static", ["line 3", ".system"]),
    ("import_sys", "import sys\ndef signals(data):\n    sys.modules['os'].system('id')\n" + T,
     "static", ["line 1", "import sys"]),
    ("builtins_module", "import builtins\ndef signals(data):\n    builtins.open('/etc/passwd')\n" + T,
     "static", ["line 1", "import builtins"]),
    ("signal_kill", "import signal\ndef signals(data):\n    signal.raise_signal(9)\n" + T,
     "static", ["line 1", "import signal"]),
    ("fork_mp", "import multiprocessing\ndef signals(data):\n    multiprocessing.Process(target=print).start()\n" + T,
     "static", ["line 1", "import multiprocessing"]),
    ("generator_frame", "def signals(data):\n    g = (i for i in [1])\n    f = g.gi_frame.f_back\n" + T,
     "static", ["line 3", "f_back"]),
    ("builtins_name", "def signals(data):\n    b = __builtins__\n" + T, "static", ["line 2", "__builtins__"]),
    ("vars_escape", "def signals(data):\n    v = vars()\n" + T, "static", ["line 2", "vars"]),
    ("relative_import", "from . import secrets\ndef signals(data):\n" + T, "static", ["line 1", "relative import"]),
    # -- refused at run time (passes the static check) ---------------------------------------------
    ("pandas_read_file", "import pandas as pd\ndef signals(data):\n    pd.read_csv('/etc/passwd')\n" + T,
     "forbidden", ["line 3", "open"]),
    ("pandas_write_file", "def signals(data):\n    data.to_csv('{scratch}/stolen.csv')\n" + T,
     "forbidden", ["line 2", "stolen.csv"]),
    ("numpy_save", "import numpy as np\ndef signals(data):\n    np.save('{scratch}/x.npy', data.close.to_numpy())\n" + T,
     "forbidden", ["line 3", "x.npy"]),
    ("pandas_pickle", "import pandas as pd\ndef signals(data):\n    pd.read_pickle('/etc/hostname')\n" + T,
     "forbidden", ["line 3", "open"]),
    ("pandas_network", "import pandas as pd\ndef signals(data):\n    pd.read_json('http://127.0.0.1:9/x.json')\n" + T,
     "forbidden", ["line 3"]),
    ("swallowed_refusal",
     "import pandas as pd\ndef signals(data):\n    try:\n        pd.read_csv('/etc/passwd')\n    except BaseException:\n"
     "        pass\n" + T, "forbidden", ["line 4", "open"]),
    # -- limits ------------------------------------------------------------------------------------
    ("endless_loop", "def signals(data):\n    while True:\n        pass\n", "timeout", ["was stopped"]),  # wall clock or CPU limit, whichever hits first
    ("memory_bomb", "import numpy as np\ndef signals(data):\n    keep = []\n    while True:\n"
     "        keep.append(np.ones(50_000_000))\n", "memory", ["memory"]),
    ("huge_output", "def signals(data):\n    while True:\n        print('x' * 10_000)\n", "output", ["printed more than"]),
    # -- the strategy's own failures, with its line ---------------------------------------------------
    ("recursion", "def signals(data):\n    return signals(data)\n", "raised", ["RecursionError", "line 2"]),
    ("system_exit", "def signals(data):\n    raise SystemExit(3)\n", "raised", ["SystemExit", "line 2"]),
]

#: refused by the static check, but run here with it bypassed: the process layers must refuse them too
RUNTIME = [
    ("rt_os_system", "import os\ndef signals(data):\n    os.system('touch {scratch}/pwned')\n" + T, ["line 3", "os.system"]),
    ("rt_subprocess", "import subprocess\ndef signals(data):\n    subprocess.run(['touch', '{scratch}/pwned'])\n" + T,
     ["line 3"]),
    ("rt_socket", "import socket\ndef signals(data):\n    socket.socket().connect(('127.0.0.1', 9))\n" + T, ["line"]),
    ("rt_fork", "import os\ndef signals(data):\n    os.fork()\n" + T, ["line 3", "os.fork"]),
    ("rt_kill_parent", "import os\ndef signals(data):\n    os.kill(os.getppid(), 9)\n" + T, ["line 3", "os.kill"]),
    ("rt_ctypes", "import ctypes\ndef signals(data):\n" + T, ["ctypes"]),
    ("rt_open", "def signals(data):\n    open('/etc/passwd').read()\n" + T, ["line 2", "/etc/passwd"]),
    ("rt_write", "def signals(data):\n    open('{scratch}/pwned', 'w').write('x')\n" + T, ["line 2", "pwned"]),
    ("rt_subclasses",
     "def signals(data):\n    for c in ().__class__.__base__.__subclasses__():\n        if c.__name__ == '_wrap_close':\n"
     "            c.__init__.__globals__['system']('touch {scratch}/pwned')\n" + T, ["line 4", "os.system"]),
    ("rt_listdir", "import os\ndef signals(data):\n    os.listdir('/root')\n" + T, ["line 3", "/root"]),
    ("rt_import_dynamic", "def signals(data):\n    __import__('pty')\n" + T, ["line 2", "pty"]),
]

#: code that must keep working inside the sandbox
ALLOWED = [
    ("numpy_pandas", "import numpy as np\nimport pandas as pd\ndef signals(data, n=20):\n"
     "    z = (data.close - data.close.rolling(n).mean()) / data.close.rolling(n).std()\n"
     "    return pd.Series(np.clip(-z / 3, -1, 1), index=data.index).fillna(0)\n"),
    ("math_statistics", "import math, statistics\ndef signals(data):\n"
     "    m = statistics.median([1.0, 2.0, 3.0]) * math.sqrt(4.0)\n    return (data.close > data.close.mean()) * (m / 4)\n"),
    ("documented_few", "import itertools, functools, collections, datetime, decimal, fractions, random, re\n"
     "def signals(data):\n    r = random.Random(1).random() * 0\n    return data.close * 0 + r\n"),
    ("ewm_resample", "def signals(data):\n    fast = data.close.ewm(span=12).mean()\n    slow = data.close.ewm(span=26).mean()\n"
     "    return (fast > slow).astype(float) - (fast < slow).astype(float)\n"),
    ("prints_are_logged", "def signals(data):\n    print('hello from the strategy')\n    return data.close * 0 + 1\n"),
]
