"""hmtools: human-centric action quality assessment toolkit.

Subpackages (dependency direction ``cli -> engine -> models, datasets -> masks``;
``cli -> annotation -> masks``; nothing imports ``cli``; ``masks`` imports no torch):

- :mod:`hmtools.masks` -- the -HM mask store (COCO RLE in HDF5), import/export, validation.
- :mod:`hmtools.datasets` -- FineDiving / MTL-AQA / AQA-7 readers, synthetic generator, stats.
- :mod:`hmtools.annotation` -- pseudo masks (segmenters, trackers) and the Label Studio loop.
- :mod:`hmtools.models` -- Uni-FineParser.
- :mod:`hmtools.engine` -- training, evaluation, experiments.
"""

__version__ = "0.1.0"
