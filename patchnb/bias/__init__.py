"""Shape vs texture bias (Geirhos et al., ICLR 2019): cue-conflict stimuli, the shape-bias metric
(also in the 16-category ImageNet protocol of model-vs-human), the Geirhos stimuli loader and
training helpers (frozen backbone, transfer)."""
