"""pycaffe's ``caffe.proto.caffe_pb2``: confnet's generated schema module under Caffe's name.

The schema has Caffe's message names, field numbers and defaults, so this is one module under
two names: importing this one hands back ``confnet.proto.confnet_pb2`` itself, and messages from
either name are the same classes (``isinstance`` and ``CopyFrom`` work across them).
"""

import sys

from confnet.proto import confnet_pb2

sys.modules[__name__] = confnet_pb2
