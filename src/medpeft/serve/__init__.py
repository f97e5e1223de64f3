"""Serving finished runs over HTTP: one frozen backbone in memory, each run's adapter chosen per
request (``medpeft serve``), with a web page. See docs/serving.md.

``pool`` loads runs that share base weights over one copy and scores mixed batches; ``mixed``
runs LoRA adapters per sample in one forward pass; ``batcher`` gathers concurrent requests;
``upload`` reads bounded uploads in memory; ``app`` is the FastAPI application; ``server`` runs it.
"""
