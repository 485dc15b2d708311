"""What nicodec gives each of a model's ONNX graphs and takes from it, checked as each graph
loads (:func:`check_graph`): a graph copied in from another model is refused with a
:class:`~nicodec.errors.ModelError` naming what differs, not run into onnxruntime's own error
at the first image.
"""

from __future__ import annotations

from .errors import ModelError
from .model import ModelFiles


GRAPH_SIGNATURES = {
    # graph: (inputs: name -> (channels, element type, required), outputs in order: name -> (channels,
    # element type)); channels "M" and "Nh" are the manifest's latent and hyper-latent channels.
    "encoder": ({"image": (3, "tensor(uint8)", True), "gain": ("M", "tensor(float)", False)},
                {"y": ("M", "tensor(float)"), "z": ("Nh", "tensor(float)")}),
    "decoder": ({"y_hat": ("M", "tensor(float)", True), "quality": (1, "tensor(float)", False)},
                {"image": (3, "tensor(uint8)")}),
    "entropy_parameters": ({"z_hat": ("Nh", "tensor(int32)", True)},
                           {"scale_index": ("M", "tensor(int32)"), "mean_q": ("M", "tensor(int32)")}),
    "synthesis_gradient": ({"y_hat": ("M", "tensor(float)", True), "image": (3, "tensor(float)", True),
                            "weight": (1, "tensor(float)", False), "quality": (1, "tensor(float)", False)},
                           {"gradient": ("M", "tensor(float)")}),
}
"""What nicodec gives each graph and takes from it (``decoder_fp16``: as ``decoder``)."""


def check_graph(session, graph: str, model: ModelFiles) -> None:
    """Refuse a graph whose inputs and outputs are not those nicodec runs it with, under the
    model's manifest: a graph copied in from another model (its hash written anew) loaded and
    verified, and failed at its first image as an internal error of onnxruntime's.

    Raises:
        ModelError: naming the file and what differs.
    """
    inputs, outputs = GRAPH_SIGNATURES["decoder" if graph == "decoder_fp16" else graph]
    channels = {"M": model.latent_channels, "Nh": model.hyper_channels}
    problems = []

    def compare(kind: str, node, wanted) -> None:
        shape = node.shape if isinstance(node.shape, (list, tuple)) else []
        size = channels.get(wanted, wanted)
        if len(shape) != 4:
            problems.append(f"its {kind} {node.name} has {len(shape)} dimensions, not 4")
        elif isinstance(shape[1], int) and shape[1] != size:
            says = f"the manifest says {wanted}={size}" if wanted in channels else f"nicodec gives {size}"
            problems.append(f"its {kind} {node.name} has {shape[1]} channels where {says}")

    # The manifest's config says whether the synthesis's post-filter sees the quality (vr-5f's).
    sees_quality = bool(model.manifest["config"].get("postfilter_quality"))
    given = {node.name: node for node in session.get_inputs()}
    for name, (wanted, element, required) in inputs.items():
        node = given.pop(name, None)
        if node is None:
            if required or (name == "gain" and model.variable_rate) or (name == "quality" and sees_quality):
                problems.append(f"it has no input {name}")
            continue
        if name == "quality" and not model.variable_rate:
            problems.append("it takes a quality, and the model is single-rate")
        elif name == "quality" and not sees_quality:
            problems.append("it takes a quality, and the manifest's synthesis does not see one")
        compare("input", node, wanted)
        shape = node.shape if isinstance(node.shape, (list, tuple)) else []
        if name in ("gain", "quality") and len(shape) == 4 and any(
                isinstance(d, int) and d != 1 for d in (shape[0], *shape[2:])):
            problems.append(f"its input {name} has the shape {list(shape)}, not one value per channel")
        if node.type != element:
            problems.append(f"its input {name} is a {node.type}, not a {element}")
    problems += [f"it takes an input {name} that nicodec does not give" for name in given]
    names = [node.name for node in session.get_outputs()]
    if names[: len(outputs)] != list(outputs):
        problems.append(f"its outputs are {', '.join(names) or 'none'}, not {', '.join(outputs)}")
    else:
        for node in session.get_outputs()[: len(outputs)]:
            wanted, element = outputs[node.name]
            compare("output", node, wanted)
            if node.type != element:
                problems.append(f"its output {node.name} is a {node.type}, not a {element}")
    if problems:
        raise ModelError(f"{graph}.onnx does not fit the model {model.model_id}: {'; '.join(problems)} "
                         "(a graph of another model?)")
