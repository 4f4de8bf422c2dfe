"""Tests of the download scripts (datasets/get_*.sh), against a local HTTP server on 127.0.0.1.

The server offers a good file, a truncated file, a transfer cut short, an error page (HTTP 404) and an
error page sent with HTTP 200; the scripts must install the good file and refuse the others, leaving nothing
at the final name.
"""

import http.server
import io
import os
import shutil
import socket
import subprocess
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from asgn3.data_paths import DATASETS_DIR

ERROR_PAGE = b"<html><body><h1>Service unavailable</h1>Please try again later.</body></html>\n"


def make_zip(folder):
    """Bytes of a zip holding folder/ with two files, the way the classic archives are laid out."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/readme.txt", "hello\n")
        z.writestr(f"{folder}/data.bin", rng.integers(0, 256, 50000, dtype=np.uint8).tobytes())
    return buffer.getvalue()


def make_h5(tmp_path):
    """Bytes of a small HDF5 file with a few datasets."""
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("W1", data=np.arange(20000, dtype=np.float32).reshape(200, 100))
        f.create_dataset("b1", data=np.ones(200, dtype=np.float32))
    return path.read_bytes()


class Server:
    """A threaded HTTP server on 127.0.0.1 serving fixed routes, recording the requests' Range headers."""

    def __init__(self, routes):
        self.routes, self.ranges = routes, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                kind, body = server.routes.get(self.path, ("missing", None))
                server.ranges.append(self.headers.get("Range"))
                if kind == "missing":
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(ERROR_PAGE)))
                    self.end_headers()
                    self.wfile.write(ERROR_PAGE)
                    return
                start = 0
                wanted = self.headers.get("Range")
                if kind == "file" and wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[len("bytes=") : -1])
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if kind == "cut":  # announce the whole file, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    h5 = make_h5(tmp_path_factory.mktemp("h5"))
    return {"coco": make_zip("coco_captioning"), "tiny": make_zip("tiny-imagenet-100-A"), "h5": h5}


@pytest.fixture(scope="module")
def server(payloads):
    coco, tiny, h5 = payloads["coco"], payloads["tiny"], payloads["h5"]
    fashion = DATASETS_DIR / "fashion-mnist"
    routes = {
        "/coco.zip": ("file", coco),
        "/tiny.zip": ("file", tiny),
        "/truncated.zip": ("file", coco[: len(coco) // 2]),
        "/cut.zip": ("cut", coco),
        "/page.zip": ("file", ERROR_PAGE),
        "/wrong-folder.zip": ("file", tiny),
        "/model.h5": ("file", h5),
        "/truncated.h5": ("file", h5[: len(h5) // 3]),
        "/page.h5": ("file", ERROR_PAGE),
    }
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        # the same images, but not the published bytes: another time stamp in the gzip header
        restamped = bytearray((fashion / name).read_bytes())
        restamped[4:8] = (int.from_bytes(restamped[4:8], "little") ^ 1).to_bytes(4, "little")
        routes[f"/fashion/{name}"] = ("file", bytes(restamped))
    server = Server(routes)
    yield server
    server.close()


def run_script(name, dest, downloader="curl", **env):
    """Run datasets/<name> with ASGN3_DATASETS_DIR=dest and the given environment overrides."""
    full_env = {**os.environ, "ASGN3_DATASETS_DIR": str(dest), "ASGN3_DOWNLOADER": downloader, **env}
    return subprocess.run(
        ["bash", str(DATASETS_DIR / name)], env=full_env, capture_output=True, text=True, timeout=120
    )


def downloaders():
    return [tool for tool in ("curl", "wget") if shutil.which(tool)]


@pytest.mark.parametrize("downloader", downloaders())
def test_good_zip_is_installed(server, payloads, tmp_path, downloader):
    url = server.url + "/coco.zip"
    result = run_script("get_coco_captioning.sh", tmp_path, downloader, ASGN3_COCO_URL=url)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "coco_captioning" / "readme.txt").read_text() == "hello\n"
    assert len((tmp_path / "coco_captioning" / "data.bin").read_bytes()) == 50000
    # no zip, .part or temporary folder is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco_captioning"]
    again = run_script("get_coco_captioning.sh", tmp_path, downloader, ASGN3_COCO_URL=url)
    assert again.returncode == 0 and "already present" in again.stdout


def test_tiny_imagenet_zip_is_installed(server, tmp_path):
    result = run_script("get_tiny_imagenet_a.sh", tmp_path, ASGN3_TINY_IMAGENET_URL=server.url + "/tiny.zip")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny-imagenet-100-A" / "readme.txt").is_file()


@pytest.mark.parametrize("downloader", downloaders())
@pytest.mark.parametrize(
    "route, message",
    [
        ("/truncated.zip", "not a valid file"),
        ("/page.zip", "not a valid file"),
        ("/wrong-folder.zip", "not a valid file"),
        ("/absent.zip", "error"),
    ],
)
def test_bad_zips_are_refused(server, tmp_path, downloader, route, message):
    result = run_script("get_coco_captioning.sh", tmp_path, downloader, ASGN3_COCO_URL=server.url + route)
    print(result.stdout, result.stderr)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr and "nothing was installed" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no final folder, no zip, no .part


def test_cut_transfer_keeps_only_the_part_and_resumes(server, payloads, tmp_path):
    result = run_script("get_coco_captioning.sh", tmp_path, ASGN3_COCO_URL=server.url + "/cut.zip")
    print(result.stdout, result.stderr)
    assert result.returncode != 0 and "nothing was installed" in result.stderr
    part = tmp_path / "coco_captioning.zip.part"
    assert sorted(p.name for p in tmp_path.iterdir()) == [part.name]
    kept = part.stat().st_size
    assert payloads["coco"].startswith(part.read_bytes()) and 0 < kept < len(payloads["coco"])
    server.ranges.clear()
    result = run_script("get_coco_captioning.sh", tmp_path, ASGN3_COCO_URL=server.url + "/coco.zip")
    assert result.returncode == 0, result.stderr
    assert "Resuming" in result.stdout and server.ranges == [f"bytes={kept}-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco_captioning"]


def test_offline_gives_a_clear_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_script(
        "get_pretrained_model.sh", tmp_path, ASGN3_PRETRAINED_URL=f"http://127.0.0.1:{port}/m.h5"
    )
    assert result.returncode != 0 and "offline" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("downloader", downloaders())
def test_pretrained_model_good_and_bad(server, payloads, tmp_path, downloader):
    for route in ("/truncated.h5", "/page.h5", "/absent.h5"):
        result = run_script(
            "get_pretrained_model.sh", tmp_path, downloader, ASGN3_PRETRAINED_URL=server.url + route
        )
        assert result.returncode != 0 and "nothing was installed" in result.stderr, route
        assert list(tmp_path.iterdir()) == [], route
    result = run_script(
        "get_pretrained_model.sh", tmp_path, downloader, ASGN3_PRETRAINED_URL=server.url + "/model.h5"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pretrained_model.h5").read_bytes() == payloads["h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained_model.h5"]


def test_fashion_mnist_from_a_system_copy(tmp_path):
    system = tmp_path / "system"
    system.mkdir()
    for f in (DATASETS_DIR / "fashion-mnist").iterdir():
        (system / f.name).symlink_to(f.resolve())
    dest = tmp_path / "kit"
    result = run_script(
        "get_fashion_mnist.sh",
        dest,
        ASGN3_FASHION_MNIST_SYSTEM_DIR=str(system),
        ASGN3_FASHION_MNIST_URL="http://127.0.0.1:9/unused",
    )
    assert result.returncode == 0, result.stderr
    assert "6000 / 1000 images: OK" in result.stdout
    assert len(list((dest / "fashion-mnist").iterdir())) == 4


def test_fashion_mnist_download_is_checked_against_published_md5(server, tmp_path):
    """Files whose MD5 differs from the published one are refused."""
    result = run_script(
        "get_fashion_mnist.sh",
        tmp_path,
        ASGN3_FASHION_MNIST_URL=server.url + "/fashion",
        ASGN3_FASHION_MNIST_SYSTEM_DIR=str(tmp_path / "none"),
    )
    print(result.stdout, result.stderr)
    assert result.returncode != 0 and "differs from the published" in result.stderr
    assert list((tmp_path / "fashion-mnist").iterdir()) == []


def test_scripts_are_valid_bash():
    for script in sorted(Path(DATASETS_DIR).glob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
