"""Event physics: particles, Pythia 8 generation, the detector response, jet clustering and
observables. Array code over many events at once; no I/O, no Ray."""
