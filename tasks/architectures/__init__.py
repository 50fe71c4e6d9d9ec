"""The shipped architecture tasks and their trusted support code.

Each task is a folder with an ``architecture.toml`` (see ``daedalus.tasks.architecture``);
reference designs live in ``designs/``. ``data`` generates every dataset from a seed (or
reads one that a package ships, scikit-learn's digits), ``interfaces`` wraps a candidate
into the trainable model its interface promises. Both run inside the sandbox only.
"""
