"""staff/protocol.py reads what comes back from a run as untrusted input: forged, damaged or oversized
result files fail their job with a clear note, and never raise or allocate what a header claims."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from staff.protocol import read_outcomes, write_failure, write_outcome
from staff.sandbox import RunResult

RUN = RunResult(returncode=0, timed_out=False, seconds=1.0, output="")


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def terabyte_npy():
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)


def crc_mismatch():
    data = bytearray(npz({"x.npy": npy(np.zeros((3, 4)))}))
    data[60] ^= 0xFF
    return bytes(data)


OK = json.dumps({"ok": True, "missing": []})
FORGED = {  # name: (status text or None for a missing file, output bytes or None, what the note says)
    "output not a zip": (OK, b"PK\x03\x04 not a zip", "not a valid npz"),
    "CRC mismatch": (OK, crc_mismatch(), "not a valid npz"),
    "header declaring terabytes": (OK, npz({"x.npy": terabyte_npy()}), "declares 8000000000000 bytes"),
    "complex numbers": (OK, npz({"x.npy": npy(np.ones(3) + 1j)}), "only real numbers"),
    "pickled objects": (OK, npz({"x.npy": npy(np.array([object()], dtype=object))}), "only real numbers"),
    "structured dtype": (OK, npz({"x.npy": npy(np.zeros(2, dtype=[("a", float)]))}), "only real numbers"),
    "member not an array": (OK, npz({"evil.py": b"print(1)"}), "not an array NAME.npy"),
    "too many arrays": (OK, npz({f"a{i}.npy": npy(np.zeros(1)) for i in range(100)}), "more than 64"),
    "status nested deep": ("[" * 100000 + "]" * 100000, npz({}), "nested too deep"),
    "status not JSON": ("{ok: yes", npz({}), "not JSON"),
    "status of the wrong shape": (json.dumps({"ok": "yes"}), npz({}), 'not {"ok"'),
    "status too large": (json.dumps({"ok": True, "pad": "x" * (2 << 20)}), npz({}), "more than 1048576"),
    "missing not a list": (json.dumps({"ok": True, "missing": {"a": 1}}), npz({}), "'missing'"),
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_result_files_fail_their_job_with_a_note(tmp_path, name):
    status, output, note = FORGED[name]
    (tmp_path / "status_0.json").write_text(status)
    (tmp_path / "out_0.npz").write_bytes(output)
    [outcome] = read_outcomes(tmp_path, 1, RUN)
    print(outcome.error)
    assert not outcome.ok
    assert "cannot be trusted" in outcome.error and note in outcome.error


@pytest.mark.parametrize("which", ["status_0.json", "out_0.npz"])
def test_result_files_that_are_links_are_not_followed(tmp_path, which):
    secret = tmp_path / "secret.json"
    secret.write_text(OK)
    write_outcome(tmp_path, 0, {"x": np.ones(2)})
    os.remove(tmp_path / which)
    os.symlink(secret, tmp_path / which)
    [outcome] = read_outcomes(tmp_path, 1, RUN)
    assert not outcome.ok and "a link or a special file" in outcome.error


def test_a_fifo_is_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "status_0.json")
    [outcome] = read_outcomes(tmp_path, 1, RUN)
    assert not outcome.ok and "not a regular file" in outcome.error


def test_what_the_runner_writes_reads_back(tmp_path):
    write_outcome(tmp_path, 0, {"x": np.arange(6.0).reshape(2, 3), "flag": np.array(True), "gone": None})
    write_failure(tmp_path, 1, "ValueError: bad (at rnn_layers.py:3 in f)")
    first, second, third = read_outcomes(tmp_path, 3, RUN)
    assert first.ok and first.missing == ["gone"]
    assert np.array_equal(first.arrays["x"], np.arange(6.0).reshape(2, 3)) and first.arrays["flag"]
    assert not second.ok and second.error.startswith("ValueError: bad")
    assert not third.ok and "before reporting" in third.error


def test_the_runner_refuses_to_write_complex_answers(tmp_path):
    with pytest.raises(TypeError, match="expected real numbers"):
        write_outcome(tmp_path, 0, {"x": np.ones(2) * 1j})
