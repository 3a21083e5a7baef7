"""The ``nnseg`` command line: argparse in front of the library; the only place that may read the environment."""
