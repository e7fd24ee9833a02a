"""Memory that cannot fit is one line naming the layer, the bytes and the machine's memory,
said before the memory is used; an allocation failure elsewhere is one line too."""

import pytest
from click.testing import CliRunner

from confnet import memory
from confnet.cli import main
from confnet.errors import ConfnetError
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io

DATA_NET = """
name: "big"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "%s" batch_size: %d } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 } }
"""
INPUT_NET = """
name: "wide"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 64 dim: 1000 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 1000 } }
"""


def pretend_memory(monkeypatch, available, total=8 << 30):
    monkeypatch.setattr(memory, "host_memory", lambda: (available, total))


def test_data_layer_batch_is_checked_before_the_first_read(tiny_lmdb, monkeypatch):
    """1 x 8 x 8 float images, 7 batches (4 prefetched + 3) of 10000: 17.1 MiB; 1 MiB free."""
    pretend_memory(monkeypatch, 1 << 20)
    read = []
    monkeypatch.setattr("confnet.data.lmdb_io.LMDBReader.read_batch",
                        lambda self, n: read.append(n))
    with pytest.raises(ConfnetError, match=r"layer 'data' \(Data\): batches of 10000 x 1 x 8 x 8 "
                       r"values \(batch_size 10000, 4 prepared ahead\) needs 17.1 MiB, but this "
                       r"machine has 1.0 MiB available of 8.0 GiB"):
        Net(io.parse_text(DATA_NET % (tiny_lmdb, 10000), pb.NetParameter))
    assert read == []


def test_net_total_names_the_layer_where_it_runs_out(monkeypatch):
    """Data and diff of in: 64 x 1000, then of ip: 64 x 1000 top, 1000 x 1000 weights, 1000
    biases: 9032000 bytes in all."""
    pretend_memory(monkeypatch, 2 << 20)
    with pytest.raises(ConfnetError, match=r"net 'wide', up to layer 'ip' \(InnerProduct\), "
                       r"needs 8.6 MiB, but this machine has 2.0 MiB"):
        Net(io.parse_text(INPUT_NET, pb.NetParameter))
    pretend_memory(monkeypatch, 9 << 20)
    Net(io.parse_text(INPUT_NET, pb.NetParameter))


def test_host_memory_reads_the_machine():
    available, total = memory.host_memory()
    assert 0 < available <= total


def test_check_fits_is_the_device_hook():
    memory.check_fits(10, 10, "x")
    with pytest.raises(ConfnetError, match="layer 'a' needs 2.0 GiB, but GPU 0 has 1.0 GiB "
                                           "available of 4.0 GiB"):
        memory.check_fits(2 << 30, 1 << 30, "layer 'a'", "GPU 0", 4 << 30)


def test_allocation_failure_is_one_line(tmp_path, monkeypatch):
    """A MemoryError where no estimate caught it: named by the layer being set up, and by the
    command at the command line."""
    path = tmp_path / "net.prototxt"
    path.write_text(INPUT_NET)

    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("confnet.layers.inner_product.InnerProduct.layer_setup", no_memory)
    with pytest.raises(ConfnetError, match=r"layer 'ip' \(InnerProduct\): out of memory while "
                                           "setting up"):
        Net(str(path))
    monkeypatch.undo()
    monkeypatch.setattr("confnet.timing.time_net", no_memory)
    result = CliRunner().invoke(main, ["time", "--model", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "confnet: error: out of memory while running 'confnet time'; make the batch, the net "
        "or the data smaller")
