"""An example plugin for discrete_latents: the ``lfq_sign`` quantizer and the ``bigram`` prior.

Nothing is imported here on purpose. discrete_latents loads each class through its entry point
(``dl_example_plugin.sign_quantizer:SignQuantizer``, ``dl_example_plugin.bigram_prior:BigramPrior``)
the first time its name is looked up, so installing the plugin costs nothing until it is used.
"""

__version__ = "0.1.0"
