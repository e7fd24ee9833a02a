"""Net surgery with confnet's pycaffe-style API: make a trained LeNet fully convolutional.

LeNet's classifier, ip1 (500 x 800) and ip2 (10 x 500), multiplies the whole 50 x 4 x 4 pool2
map of one digit by a matrix. The same numbers, reshaped into 500 kernels of 50 x 4 x 4 and 10
kernels of 500 x 1 x 1, are convolutions (deploy_full_conv.prototxt) that compute the same
scores for every 28 x 28 window of a larger image, every 4 pixels (the stride of the two
poolings), in one forward pass. This is the "net surgery" of Caffe's notebook, step by step:

1. load the trained net and the fully convolutional definition;
2. copy the layers whose names match (conv1, conv2) and transplant ip1 / ip2 into ip1-conv /
   ip2-conv by reshaping the weights (``net.params[name][i].data``);
3. check on a real digit that both nets give the same probabilities, score a strip of digits
   window by window, and save the new weights.

deploy.prototxt takes the 26 x 26 centre of a digit (LeNet trains on 26 x 26 crops), but pool2
is 4 x 4 for whole 28 x 28 digits too, so ``forward(data=...)`` reshapes it to them. The windows
are 28 x 28 because at that size the poolings tile the image exactly: each window's result is
then the same whether it is computed alone or as part of the larger image.

Run from the repository root after training LeNet (``bash tools/demo.sh``):

    python models/lenet/net_surgery.py --weights examples/lenet/lenet_iter_3000.caffemodel \\
        --out examples/lenet/lenet_full_conv.caffemodel
"""

import argparse
import os
import sys

import numpy as np

import confnet

HERE = os.path.dirname(os.path.abspath(__file__))
TRANSPLANTS = {"ip1": "ip1-conv", "ip2": "ip2-conv"}   # InnerProduct layer -> its Convolution
STRIDE = 4   # pixels between windows: the two 2x2 poolings


def make_fully_convolutional(net, full, transplants=TRANSPLANTS):
    """Give `full` the weights of `net`: same-named layers copied, InnerProduct weights reshaped
    into the kernels of the Convolution that replaces them."""
    for name, blobs in net.params.items():
        target = full.params[transplants.get(name, name)]
        for source, blob in zip(blobs, target):
            # (N, C*H*W) and (N, C, H, W) hold the same numbers in the same order.
            blob.data[...] = source.data.reshape(blob.data.shape)


def load_digit(folder, digit, index=0):
    """The index-th PNG of one digit class in a get_mnist.py folder, scaled to [0, 1]."""
    from PIL import Image
    names = sorted(os.listdir(os.path.join(folder, str(digit))))
    image = Image.open(os.path.join(folder, str(digit), names[index])).convert("L")
    return np.asarray(image, dtype=np.float32) / 256.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="trained LeNet .caffemodel")
    parser.add_argument("--out", help="write the fully convolutional weights here")
    parser.add_argument("--digits", default="data/mnist/test",
                        help="folder of digit PNGs by class (tools/get_mnist.py)")
    args = parser.parse_args(argv)

    net = confnet.Net(os.path.join(HERE, "deploy.prototxt"), weights=args.weights,
                      phase=confnet.TEST)
    full = confnet.Net(os.path.join(HERE, "deploy_full_conv.prototxt"), phase=confnet.TEST)
    make_fully_convolutional(net, full)

    digit = load_digit(args.digits, 7)[None, None]
    prob = net.forward(data=digit)["prob"]
    full_prob = full.forward(data=digit)["prob"]
    print(f"one digit: LeNet says {prob.argmax()}, the fully convolutional net says "
          f"{full_prob.argmax()}; largest difference {np.abs(full_prob.ravel() - prob).max():.2g}")

    strip_digits = [3, 1, 4, 1, 5, 9, 2, 6]
    strip = np.concatenate([load_digit(args.digits, d, i) for i, d in enumerate(strip_digits)],
                           axis=1)
    scores = full.forward(data=strip[None, None])["prob"][0]      # (10, 1, windows)
    windows = scores.argmax(axis=0)[0]
    print(f"a strip of {len(strip_digits)} digits ({strip.shape[1]} x {strip.shape[0]} pixels), "
          f"{scores.shape[-1]} windows in one pass, every {STRIDE} pixels:")
    print("  class of each window:  " + " ".join(map(str, windows)))
    aligned = windows[::28 // STRIDE]
    print(f"  windows on the digits: {' '.join(map(str, aligned))} "
          f"(the digits: {' '.join(map(str, strip_digits))})")
    if args.out:
        full.save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
