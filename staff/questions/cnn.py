"""The small fixed-weight CNN that Q3, Q4 and Q6 run the image-gradient and attribution functions on.

Its weights are the master's PretrainedCNN initialisation from a seed, built inside the runner (the
model is infrastructure: the sandbox kit holds the master's copy), never in the grader.
"""

from staff.protocol import Job

IMAGES = "asgn3.image_gradients"
ARCH = {
    "num_classes": 10,
    "input_size": 64,
    "num_filters": [8, 16, 16],
    "filter_sizes": [5, 3, 3],
    "strides": [2, 2, 2],
    "pads": [2, 1, 1],
    "hidden_dim": 32,
}


def cnn_options(init_seed, **options):
    """The runner's options of a 'cnn' job on the small CNN initialised from init_seed."""
    return {"module": IMAGES, "arch": ARCH, "init_seed": int(init_seed), **options}


def call_on_cnn(init_seed, arrays, function, inputs, array_kwargs=None, module=IMAGES, **kwargs):
    """A job calling <module>.<function>(*inputs, model, **kwargs) on the small CNN (module: by default
    asgn3.image_gradients).

    inputs: array names or plain values; array_kwargs: {keyword: array name}.
    """
    options = cnn_options(
        init_seed,
        module=module,
        action="call",
        function=function,
        inputs=inputs,
        kwargs=kwargs,
        array_kwargs=array_kwargs or {},
    )
    return Job("cnn", options, arrays)


def scores_on_cnn(init_seed, X):
    """A (trusted) job returning the small CNN's class scores of the images X."""
    return Job("cnn", cnn_options(init_seed, action="scores"), {"X": X})
