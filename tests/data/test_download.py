"""Downloads with the standard library: a local http.server stands in for the official sites.

Every failure must be one line and leave nothing in the data folder: no
archive, no temporary file, no half-unpacked folder.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy
import pytest

from npalexnet.data import DataError, DataNotFoundError, DownloadError, cifar_pickle, download, load_dataset
from npalexnet.data.download import ENV_URL, source_url
from npalexnet.data.fashionmnist import read_idx
from tests.fakedata import CLASSES, cifar_archive, fake_images, fashionmnist_files, write_cifar_batches
from tests.fileserver import FileServer, closed_port_url, md5, publish_cifar10, publish_fashionmnist

ARCHIVE_NAME = cifar_pickle.ARCHIVE.name


def _files(folder) -> list[str]:
    """Everything under ``folder`` (hidden files included), relative, sorted; [] if it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def archive():
    return cifar_archive(per_batch=4, test=6)


@pytest.fixture
def served(archive, monkeypatch):
    """A local server with the test archive, published under its own MD5."""
    publish_cifar10(monkeypatch, md5(archive))
    with FileServer({ARCHIVE_NAME: archive}) as server:
        yield server


def test_download_checks_unpacks_and_keeps_only_the_folder(served, tmp_path):
    lines = []
    ds = load_dataset("cifar10", root=tmp_path / "data", download_url=served.url, log=lines.append)
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (6, 3, 32, 32)
    assert ds.classes == list(CLASSES)
    images, labels = fake_images(4, seed=0)
    numpy.testing.assert_array_equal(ds.train.images[:4], images.transpose(0, 3, 1, 2))
    numpy.testing.assert_array_equal(ds.train.labels[:4], labels)
    assert served.requests == [ARCHIVE_NAME]
    assert any(served.url + ARCHIVE_NAME in line for line in lines)
    # the archive we fetched is gone once unpacked: only the official folder remains
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-batches-py"]


def test_existing_copy_is_used_without_the_network(served, tmp_path):
    load_dataset("cifar10", root=tmp_path / "data", download_url=served.url)
    again = load_dataset("cifar10", root=tmp_path / "data", download_url=closed_port_url())
    assert len(again.train) == 20 and served.requests == [ARCHIVE_NAME]


def test_archive_put_in_root_by_hand_is_checked_unpacked_and_kept(archive, monkeypatch, tmp_path):
    publish_cifar10(monkeypatch, md5(archive))
    (tmp_path / ARCHIVE_NAME).write_bytes(archive)
    ds = load_dataset("cifar10", root=tmp_path, download_url=closed_port_url())
    assert len(ds.test) == 6
    assert _files(tmp_path)[:2] == ["cifar-10-batches-py", "cifar-10-batches-py/batches.meta"]
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == archive


def test_archive_by_hand_with_the_wrong_checksum_is_refused_and_kept(archive, monkeypatch, tmp_path):
    publish_cifar10(monkeypatch, "0" * 32)
    (tmp_path / ARCHIVE_NAME).write_bytes(archive)
    with pytest.raises(DownloadError) as excinfo:
        load_dataset("cifar10", root=tmp_path)
    assert f"{tmp_path / ARCHIVE_NAME}: MD5 {md5(archive)} is not the published {'0' * 32}" in _one_line(excinfo)
    assert "remove it to download again" in str(excinfo.value)
    assert _files(tmp_path) == [ARCHIVE_NAME]


def test_transfer_cut_short(served, archive, tmp_path):
    served.truncate[ARCHIVE_NAME] = len(archive) // 2
    with pytest.raises(DownloadError) as excinfo:
        load_dataset("cifar10", root=tmp_path / "data", download_url=served.url)
    message = _one_line(excinfo)
    assert f"download of {served.url}{ARCHIVE_NAME} failed" in message
    assert f"stopped after {len(archive) // 2:,} of {len(archive):,} bytes" in message
    assert "nothing was kept" in message and "--download-url" in message
    assert _files(tmp_path / "data") == []


def test_truncated_archive_fails_its_checksum(archive, monkeypatch, tmp_path):
    """A mirror serving a truncated file whole: the MD5 catches it."""
    publish_cifar10(monkeypatch, md5(archive))
    with FileServer({ARCHIVE_NAME: archive[: len(archive) // 3]}) as server:
        with pytest.raises(DownloadError) as excinfo:
            load_dataset("cifar10", root=tmp_path / "data", download_url=server.url)
    message = _one_line(excinfo)
    assert f"download of {server.url}{ARCHIVE_NAME}: MD5 {md5(archive[: len(archive) // 3])}" in message
    assert f"is not the published {md5(archive)}" in message and "nothing was kept" in message
    assert _files(tmp_path / "data") == []


def test_wrong_checksum(served, monkeypatch, tmp_path):
    publish_cifar10(monkeypatch, "f" * 32)
    with pytest.raises(DownloadError) as excinfo:
        load_dataset("cifar10", root=tmp_path / "data", download_url=served.url)
    assert f"is not the published {'f' * 32}" in _one_line(excinfo)
    assert _files(tmp_path / "data") == []


def test_refused_connection(tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError) as excinfo:
        load_dataset("cifar10", root=tmp_path / "data", download_url=url)
    message = _one_line(excinfo)
    assert message.startswith(f"download of {url}{ARCHIVE_NAME} failed: ") and "refused" in message
    assert _files(tmp_path / "data") == []


def test_mirror_without_the_file(tmp_path):
    with FileServer({}) as server:
        with pytest.raises(DownloadError) as excinfo:
            load_dataset("cifar10", root=tmp_path / "data", download_url=server.url)
    assert f"{server.url}{ARCHIVE_NAME} failed: HTTP 404" in _one_line(excinfo)
    assert _files(tmp_path / "data") == []


def test_server_that_does_not_speak_http(served, tmp_path):
    served.garbage.add(ARCHIVE_NAME)
    with pytest.raises(DownloadError) as excinfo:
        load_dataset("cifar10", root=tmp_path / "data", download_url=served.url)
    message = _one_line(excinfo)
    assert f"download of {served.url}{ARCHIVE_NAME} failed after 0 bytes (BadStatusLine" in message
    assert _files(tmp_path / "data") == []


@pytest.mark.parametrize("case", ["not a tar", "truncated tar", "no batches folder", "incomplete folder",
                                  "member outside", "member outside, no tarfile filters"])
def test_bad_archive_with_a_matching_checksum_unpacks_nothing(case, archive, monkeypatch, tmp_path):
    if case.endswith("no tarfile filters"):   # Python 3.10 before 3.10.12
        monkeypatch.delattr(tarfile, "data_filter")
        case = "member outside"
    if case == "not a tar":
        body = b"<html>a proxy's login page</html>"
    elif case == "truncated tar":
        body = gzip.compress(gzip.decompress(archive)[:5000])
    else:
        members = {"no batches folder": {"other/data_batch_1": b"x"},
                   "incomplete folder": {"cifar-10-batches-py/data_batch_1": b"x"},
                   "member outside": {"../escaped": b"x", "cifar-10-batches-py/x": b"x"}}[case]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        body = buffer.getvalue()
    publish_cifar10(monkeypatch, md5(body))
    with FileServer({ARCHIVE_NAME: body}) as server:
        with pytest.raises(DownloadError) as excinfo:
            load_dataset("cifar10", root=tmp_path / "data", download_url=server.url)
    message = _one_line(excinfo)
    assert message.startswith(str(tmp_path / "data" / ARCHIVE_NAME)) and "nothing was unpacked" in message
    assert _files(tmp_path) == ["data"]   # the data folder is empty; nothing escaped it


def test_ctrl_c_during_the_download_removes_the_partial_file(served, monkeypatch, tmp_path):
    class InterruptedBar(download.tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "tqdm", InterruptedBar)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        load_dataset("cifar10", root=tmp_path / "data", download_url=served.url, log=lines.append)
    assert _files(tmp_path / "data") == []
    assert lines[-1] == f"download of {ARCHIVE_NAME} interrupted: the partial file was removed"


def test_incomplete_folder_in_the_way_is_not_deleted(served, tmp_path):
    folder = write_cifar_batches(tmp_path, per_batch=1, test=1)
    (folder / "test_batch").unlink()
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py is incomplete.*remove it"):
        load_dataset("cifar10", root=tmp_path, download_url=served.url)
    assert served.requests == [] and (folder / "data_batch_1").is_file()


def test_no_download_and_nothing_local(tmp_path):
    with pytest.raises(DataNotFoundError, match=f"{tmp_path.name}.*--no-download.*--data-dir"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_environment_variable_names_the_mirror_and_the_option_wins(served, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_URL, served.url)
    assert len(load_dataset("cifar10", root=tmp_path / "a").train) == 20
    monkeypatch.setenv(ENV_URL, closed_port_url())
    assert len(load_dataset("cifar10", root=tmp_path / "b", download_url=served.url).train) == 20
    assert served.requests == [ARCHIVE_NAME, ARCHIVE_NAME]


def test_local_folder_as_mirror(archive, monkeypatch, tmp_path):
    publish_cifar10(monkeypatch, md5(archive))
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / ARCHIVE_NAME).write_bytes(archive)
    ds = load_dataset("cifar10", root=tmp_path / "data", download_url=str(tmp_path / "mirror"))
    assert len(ds.train) == 20 and _files(tmp_path / "data")[0] == "cifar-10-batches-py"


def test_source_url_forms(monkeypatch, tmp_path):
    remote = cifar_pickle.REMOTE
    monkeypatch.delenv(ENV_URL, raising=False)
    assert source_url(remote) == "https://www.cs.toronto.edu/~kriz/"
    assert source_url(remote, "http://mirror.example/cifar") == "http://mirror.example/cifar/"
    assert source_url(remote, f"http://mirror.example/x/{ARCHIVE_NAME}") == "http://mirror.example/x/"
    assert source_url(remote, str(tmp_path)) == tmp_path.as_uri() + "/"
    monkeypatch.setenv(ENV_URL, "file:///srv/data/")
    assert source_url(remote) == "file:///srv/data/"


def test_fashionmnist_downloads_the_four_files_and_reads_them_without_torch(monkeypatch, tmp_path):
    files = fashionmnist_files(train=12, test=6)
    with FileServer(publish_fashionmnist(monkeypatch, files)) as server:
        ds = load_dataset("fashionmnist", root=tmp_path / "data", download_url=server.url)
        again = load_dataset("fashionmnist", root=tmp_path / "data", download_url=server.url)
    assert ds.train.images.shape == (12, 1, 28, 28) and ds.test.images.shape == (6, 1, 28, 28)
    assert ds.in_channels == 1 and ds.classes[0] == "T-shirt/top" and len(ds.classes) == 10
    numpy.testing.assert_array_equal(ds.train.images[:, 0], fake_images(12, size=28)[0][..., 0])
    numpy.testing.assert_array_equal(again.test.labels, numpy.arange(6) % 10)
    assert sorted(server.requests) == sorted(f"{name}.gz" for name in files)   # once each
    assert _files(tmp_path / "data") == ["FashionMNIST", "FashionMNIST/raw"] + sorted(
        f"FashionMNIST/raw/{name}.gz" for name in files)


def test_fashionmnist_fetches_only_the_missing_file_and_a_failure_keeps_the_others(monkeypatch, tmp_path):
    served = publish_fashionmnist(monkeypatch, fashionmnist_files(train=4, test=2))
    with FileServer(served) as server:
        server.truncate["t10k-labels-idx1-ubyte.gz"] = 10
        with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz failed: the transfer stopped after 10"):
            load_dataset("fashionmnist", root=tmp_path, download_url=server.url)
        raw = tmp_path / "FashionMNIST" / "raw"
        assert len(_files(raw)) == 3 and not list(raw.glob(".*"))   # three whole files, no partial one
        del server.truncate["t10k-labels-idx1-ubyte.gz"]
        server.requests.clear()
        assert len(load_dataset("fashionmnist", root=tmp_path, download_url=server.url).test) == 2
    assert server.requests == ["t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("damage", ["truncated gzip", "wrong header", "missing values"])
def test_unreadable_idx_file_names_it(damage, tmp_path):
    data = fashionmnist_files(train=3, test=1)["train-images-idx3-ubyte"]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if damage == "truncated gzip":
        path.write_bytes(gzip.compress(data)[:40])
    elif damage == "wrong header":
        path.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + data[4:]))   # 0x0D: float32 values
    else:
        path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(DataError, match=f"{path.name} is not a readable idx file"):
        read_idx(path, 3)
