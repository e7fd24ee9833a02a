"""A .caffemodel written by confnet parses with Caffe's own field numbers.

The schema below is built here, independently of confnet.proto, from the numbers of Caffe's
published caffe.proto (NetParameter.name = 1, layer = 100; LayerParameter.name = 1, type = 2,
blobs = 7; BlobProto.data = 5 packed, shape = 7; BlobShape.dim = 1 packed), so a wrong number
or a non-packed encoding in confnet's schema fails this test.
"""

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from confnet.net import Net

F = descriptor_pb2.FieldDescriptorProto


def caffe_subset():
    f = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe",
                                           syntax="proto2")

    def message(name, *fields):
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            fd = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fd.type_name = type_name
            if packed:
                fd.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", ("dim", 1, F.TYPE_INT64, rep, None, True))
    message("BlobProto", ("data", 5, F.TYPE_FLOAT, rep, None, True),
            ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("type", 2, F.TYPE_STRING, opt, None, False),
            ("bottom", 3, F.TYPE_STRING, rep, None, False),
            ("top", 4, F.TYPE_STRING, rep, None, False),
            ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False))
    message("NetParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


NET = """
name: "lenet_like"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
"""


def test_caffemodel_parses_with_caffes_numbers(tmp_path):
    from google.protobuf import text_format

    from confnet.proto import confnet_pb2 as pb
    net = Net(text_format.Parse(NET, pb.NetParameter()))
    path = tmp_path / "w.caffemodel"
    net.save(str(path))
    caffe_net = caffe_subset()()
    caffe_net.ParseFromString(path.read_bytes())
    assert caffe_net.name == "lenet_like"
    layers = {layer.name: layer for layer in caffe_net.layer}
    assert [layer.type for layer in caffe_net.layer] == ["Input", "Convolution", "InnerProduct"]
    conv, ip = layers["conv1"], layers["ip1"]
    assert list(conv.blobs[0].shape.dim) == [4, 1, 3, 3] and list(conv.blobs[1].shape.dim) == [4]
    assert list(ip.blobs[0].shape.dim) == [5, 144]
    np.testing.assert_array_equal(np.array(conv.blobs[0].data, np.float32).reshape(4, 1, 3, 3),
                                  net.params["conv1"][0].data)
    # confnet writes BlobProto.data packed, as Caffe does: field 5, wire type 2 (length-delimited)
    from confnet.proto.io import array_to_blob
    encoded = array_to_blob(np.ones(3, np.float32)).SerializeToString()
    assert bytes([5 << 3 | 2, 12]) + np.ones(3, "<f4").tobytes() in encoded
