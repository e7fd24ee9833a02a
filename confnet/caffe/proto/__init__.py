"""pycaffe's ``caffe.proto`` package: ``caffe_pb2`` is confnet's schema module."""
