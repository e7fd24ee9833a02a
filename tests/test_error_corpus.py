"""Every broken input in tests/corpus/ gives exactly one "confnet: error:" line that names the
problem, a non-zero exit code, no traceback, and leaves no file behind.

tests/corpus/cases.txt lists the cases, one a line: ``command arguments | expected fragment``.
Each case runs in a fresh copy of the corpus folder (its working directory), to which
``build_binary_inputs`` adds the inputs that are not text: databases, weights, solver states,
images.
"""

import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from confnet.cli import main
from confnet.data.datum import array_to_datum, datum_key
from confnet.data.lmdb_io import LMDBWriter
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from tests.conftest import write_digit_like_lmdb

CORPUS = Path(__file__).parent / "corpus"


def read_cases():
    cases = []
    for number, line in enumerate((CORPUS / "cases.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        command, fragment = (part.strip() for part in line.split("|", 1))
        cases.append(pytest.param(shlex.split(command), fragment, id=f"{number}:{command}"))
    return cases


def write_lmdb(path, values):
    with LMDBWriter(str(path)) as db:
        for i, value in enumerate(values):
            db.put(datum_key(i, f"img{i}.png"), value)


def build_binary_inputs(folder):
    """The corpus inputs that are not text files."""
    write_digit_like_lmdb(folder / "train_lmdb", n=12)
    write_lmdb(folder / "empty_lmdb", [])
    write_lmdb(folder / "notdatum_lmdb", [b"these bytes are no Datum\xff\xff"] * 3)
    nan_image = np.full((1, 8, 8), np.nan, np.float32)
    write_lmdb(folder / "nan_lmdb", [array_to_datum(nan_image, 0).SerializeToString()] * 4)
    image = np.zeros((1, 8, 8), np.uint8)
    write_lmdb(folder / "label9_lmdb", [array_to_datum(image, 9).SerializeToString()] * 4)
    (folder / "plain_dir").mkdir()
    (folder / "plain_dir" / "README.txt").write_text("not a database\n")
    (folder / "notes.txt").write_text("a regular file, not a folder\n")
    other = Net(io.parse_text(
        'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 64 } } }'
        ' layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"'
        ' inner_product_param { num_output: 5 } }', pb.NetParameter))
    other.save(str(folder / "other.caffemodel"))
    renamed = other.to_proto()
    renamed.layer[1].name = "classifier"
    io.write_binary(renamed, str(folder / "renamed.caffemodel"))
    (folder / "garbage.caffemodel").write_bytes(b"\x00\x01\x02 not protobuf \xff\xfe" * 8)
    (folder / "garbage.binaryproto").write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    io.write_binaryproto(np.zeros((1, 3, 5, 5), np.float32), str(folder / "mean_3x5x5.binaryproto"))
    io.write_binary(pb.SolverState(iter=1, history=[pb.BlobProto()] * 7),
                    str(folder / "other.solverstate"))
    io.write_binary(pb.SolverState(iter=1, learned_net="gone.caffemodel",
                                   history=[pb.BlobProto()] * 2),
                    str(folder / "orphan.solverstate"))
    (folder / "net_binary_garbage.prototxt").write_bytes(b"\x00\x01\x02\x03 garbage \xff")
    (folder / "net_not_utf8.prototxt").write_bytes(b'name: "caf\xe9"\n')
    images = folder / "images"
    images.mkdir()
    Image.new("L", (8, 8), 30).save(images / "a.png")
    Image.new("L", (8, 8), 90).save(images / "b.png")
    Image.new("L", (12, 8), 90).save(images / "wide.png")
    (images / "broken.png").write_bytes(b"not a png")
    for label in ("cat", "dog"):
        (folder / "by_class" / label).mkdir(parents=True)
        Image.new("L", (8, 8), 50).save(folder / "by_class" / label / "x.png")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, folder, dirs_exist_ok=True)
    build_binary_inputs(folder)
    return folder


def listing(folder):
    return {str(p.relative_to(folder)): p.stat().st_size if p.is_file() else None
            for p in folder.rglob("*")}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the cases whose loss overflows
@pytest.mark.parametrize("args, fragment", read_cases())
def test_broken_input(args, fragment, pristine, tmp_path, monkeypatch):
    case = tmp_path / "case"
    shutil.copytree(pristine, case)
    before = listing(case)
    monkeypatch.chdir(case)
    result = CliRunner().invoke(main, args)
    output = result.output
    assert result.exit_code not in (0, None), output
    assert "Traceback" not in output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit), output
    lines = [line for line in output.splitlines() if line.startswith("confnet: error:")]
    assert len(lines) == 1, output
    assert fragment in lines[0], lines[0]
    assert listing(case) == before, "files were left behind"
    assert os.getcwd() == str(case)


def test_corpus_is_large_enough():
    assert len(read_cases()) >= 40
