"""pycaffe's ``caffe.net_spec``: write a net as Python calls, get its NetParameter.

    from confnet.caffe import layers as L, params as P, to_proto
    n = NetSpec()
    n.data, n.label = L.Data(source="train_lmdb", backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.loss = L.SoftmaxWithLoss(n.conv1, n.label)
    text = str(n.to_proto())          # the prototxt

``L.<Type>(*bottoms, **fields)`` is one layer: each bottom is a top of an earlier call, ``ntop``
(default 1) how many tops it has, ``in_place=True`` makes its top its bottom. A call returns its
top, a tuple of tops, or (ntop=0) the layer itself. Names: a top is named after the NetSpec
attribute it is assigned to, else ``<Type><k>``; a layer after its first top.

Where a keyword goes, as pycaffe decides it: a key ending in ``param`` is a field of
LayerParameter (``param=[dict(lr_mult=1)]``, ``transform_param=dict(scale=0.5)``); another key
goes into the type's own message (``<Type>Parameter``: ``kernel_size`` of Convolution) when that
message has it, else into LayerParameter (``loss_weight``, ``include``). pycaffe then gives up;
here a key is also looked up in the other messages the layer type reads (``num_output`` of
Deconvolution goes to convolution_param, ``normalization`` of SoftmaxWithLoss to loss_param), and
a key no message has is an error naming the layer. Values: dicts fill messages, lists (or
tuples) fill repeated fields, a single value for a repeated field becomes a one-item list, and
enum fields take the number or the name (``pool="MAX"``).
"""

from collections import Counter, OrderedDict

from ..errors import ConfnetError
from ..layers import registry
from ..proto import confnet_pb2 as pb


class _NoSuchName(ConfnetError, AttributeError):
    """A name that is not there: a ConfnetError, and an AttributeError for getattr/hasattr."""


def _type_messages():
    """{layer type: its own parameter field}, from the <Type>Parameter message names."""
    table = {}
    for field in pb.LayerParameter.DESCRIPTOR.fields:
        message = field.message_type
        if field.name.endswith("_param") and message and message.name.endswith("Parameter"):
            table[message.name[:-len("Parameter")]] = field.name
    return table


_TYPE_PARAM = _type_messages()


def assign_proto(message, name, value):
    """Set field ``name`` of ``message`` from a Python value (see the module docstring)."""
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise ConfnetError(f"{message.DESCRIPTOR.name} has no field '{name}'")
    if field.is_repeated:
        target = getattr(message, name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if field.message_type is None:
                target.append(_scalar(field, item))
            else:
                _fill(target.add(), item)
    elif field.message_type is not None:
        _fill(getattr(message, name), value)
    else:
        setattr(message, name, _scalar(field, value))


def _fill(message, value):
    if isinstance(value, dict):
        for key, item in value.items():
            assign_proto(message, key, item)
    else:
        message.CopyFrom(value)


def _scalar(field, value):
    if field.enum_type is not None and isinstance(value, str):
        known = field.enum_type.values_by_name
        if value not in known:
            raise ConfnetError(f"'{value}' is not a value of {field.enum_type.name} (field "
                               f"'{field.name}'); use one of {', '.join(known)}")
        return known[value].number
    return value


class Top:
    """One blob a layer produces: top ``n`` of Function ``fn``."""

    def __init__(self, fn, n):
        self.fn, self.n = fn, n

    def to_proto(self):
        """The NetParameter of every layer this top needs."""
        return to_proto(self)


class Function:
    """One layer: its type, its bottoms (Tops of earlier layers) and its keyword fields."""

    def __init__(self, type_name, inputs, params):
        for index, top in enumerate(inputs):
            if not isinstance(top, Top):
                raise ConfnetError(f"{type_name}: bottom {index} is a {type(top).__name__}, "
                                   "not the top of a layer (pass the result of an L.* call)")
        params = dict(params)
        self.type_name = type_name
        self.inputs = tuple(inputs)
        self.ntop = params.pop("ntop", 1)
        self.in_place = params.pop("in_place", False)
        self.params = params
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _layer(self, layers, names, autonames):
        """This layer's LayerParameter; its bottoms' layers are already in ``layers``."""
        lp = pb.LayerParameter(type=self.type_name)
        lp.bottom.extend(layers[top.fn].top[top.n] for top in self.inputs)
        if self.in_place:
            lp.top.extend(lp.bottom)
        else:
            lp.top.extend(_name(top, top.fn.type_name, names, autonames) for top in self.tops)
        key = self.tops[0] if self.ntop and self not in names else self
        lp.name = _name(key, self.type_name, names, autonames)
        for field, value in self.params.items():
            try:
                assign_proto(*self._destination(lp, field), value)
            except (TypeError, ValueError, ConfnetError) as error:
                raise ConfnetError(f"layer '{lp.name}' ({self.type_name}): {field}={value!r}: "
                                   f"{error}") from None
        return lp

    def _destination(self, lp, field):
        """(message, field name) that keyword ``field`` fills."""
        if field.endswith("param"):
            return lp, field
        own = _TYPE_PARAM.get(self.type_name)
        if own and field in getattr(lp, own).DESCRIPTOR.fields_by_name:
            return getattr(lp, own), field
        if field in lp.DESCRIPTOR.fields_by_name:
            return lp, field
        read = _read_params(self.type_name)
        having = [p for p in read if field in getattr(lp, p).DESCRIPTOR.fields_by_name]
        if len(having) == 1:
            return getattr(lp, having[0]), field
        where = (f"it is in several of its messages ({', '.join(having)}); pass it inside one, "
                 f"e.g. {having[0]}=dict({field}=...)" if having else
                 f"no parameter message of the type has it (it reads "
                 f"{', '.join(read) or 'none'})")
        raise ConfnetError(where)


def _read_params(type_name):
    """The *_param fields a registered layer type reads (none for a type confnet lacks)."""
    try:
        return list(registry.layer_class(type_name).params)
    except ConfnetError:
        return []


def _name(key, type_name, names, autonames):
    """The name given to ``key`` (a Top or Function) by NetSpec, else the next <Type><k>."""
    if key not in names:
        autonames[type_name] += 1
        names[key] = f"{type_name}{autonames[type_name]}"
    return names[key]


def _emit(fn, layers, names, autonames):
    """Add ``fn``'s layer, after the layers it needs (depth first, bottoms in order), to
    ``layers``. Iterative, so a net hundreds of layers deep needs no deep recursion."""
    stack = [(fn, False)]
    while stack:
        current, ready = stack.pop()
        if current in layers:
            continue
        if ready:
            layers[current] = current._layer(layers, names, autonames)
        else:
            stack.append((current, True))
            stack.extend((top.fn, False) for top in reversed(current.inputs))


def _function(value):
    if isinstance(value, Top):
        return value.fn
    if isinstance(value, Function):
        return value
    raise ConfnetError(f"a NetSpec holds tops (results of L.* calls), not a "
                       f"{type(value).__name__}")


def _net(values, names):
    layers, autonames = OrderedDict(), Counter()
    for value in values:
        _emit(_function(value), layers, names, autonames)
    net = pb.NetParameter()
    net.layer.extend(layers.values())
    return net


def to_proto(*tops):
    """The NetParameter of every layer needed to compute ``tops`` (all names automatic)."""
    return _net(tops, {})


class NetSpec:
    """Tops assigned as attributes (``n.conv1 = L.Convolution(...)``) or items
    (``n["conv1"] = ...``); ``to_proto()`` gives the net with those names."""

    def __init__(self):
        object.__setattr__(self, "tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise _NoSuchName(f"the NetSpec has no top '{name}'; it has: "
                              f"{', '.join(self.tops) or 'none'}") from None

    def __setitem__(self, key, value):
        self.tops[key] = value

    def __getitem__(self, key):
        return self.__getattr__(key)

    def to_proto(self):
        return _net(self.tops.values(), {value: name for name, value in self.tops.items()})


class Layers:
    """``layers.<Type>(*bottoms, **fields)`` describes a layer of that type."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer(*bottoms, **fields):
            fn = Function(type_name, bottoms, fields)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops
        layer.__name__ = type_name
        return layer


class _EnumValues:
    def __init__(self, message):
        self._message = message

    def __getattr__(self, name):
        try:
            return getattr(self._message, name)
        except AttributeError:
            raise _NoSuchName(f"{self._message.DESCRIPTOR.name} has no value '{name}'") from None


class Parameters:
    """``params.<Type>.<VALUE>``: the enum values of <Type>Parameter (``params.Pooling.MAX``)."""

    def __getattr__(self, name):
        message = getattr(pb, f"{name}Parameter", None)
        if message is None:
            raise _NoSuchName(f"the schema has no message '{name}Parameter'")
        return _EnumValues(message)


layers = Layers()
params = Parameters()
