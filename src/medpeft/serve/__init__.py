"""Serving finished runs over HTTP: one frozen backbone in memory, each run's adapter chosen per
request (``medpeft serve``), with a web page. See docs/serving.md.

``pool`` loads runs that share base weights over one copy and scores mixed batches; ``mixed``
runs LoRA adapters per sample in one forward pass; ``batcher`` gathers concurrent requests;
``upload`` reads bounded uploads in memory (size, bytes in flight, body timeout, disconnects);
``inputs`` reads an image's size and scaling from its header, decodes a JPEG over the pixel limit
at a reduced size and flags inputs far from the training images; ``app`` is the FastAPI application; ``server`` runs it.
"""
