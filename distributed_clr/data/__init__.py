"""The data stages: ``generate`` (Pythia 8 events), ``lhco`` (LHC Olympics import) and
``prepare`` (dijets with Ray Data), with the dijet selection and the hash-based splits."""
